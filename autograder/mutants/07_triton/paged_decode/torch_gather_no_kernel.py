# MISTAKE: computes the attention with torch operations (a gather through the block table), no kernel
# EXPECT: no Triton kernel was launched
# NEEDS: interpreter (only the load trace of Triton's CPU interpreter catches it; compiled on a GPU it passes)
def paged_decode(q, k_cache, v_cache, block_table, seq_lens, block_n=16):
    batch, num_heads, head_dim = q.shape
    _, page, num_kv_heads, _ = k_cache.shape
    group = num_heads // num_kv_heads
    out = torch.empty_like(q)
    for b in range(batch):
        n = int(seq_lens[b])
        blocks = block_table[b, : (n + page - 1) // page].long()
        k = k_cache[blocks].flatten(0, 1)[:n].float().repeat_interleave(group, dim=1)  # (n, H, D)
        v = v_cache[blocks].flatten(0, 1)[:n].float().repeat_interleave(group, dim=1)
        s = torch.einsum("hd,nhd->hn", q[b].float(), k) / math.sqrt(head_dim)
        out[b] = torch.einsum("hn,nhd->hd", s.softmax(-1), v).to(q.dtype)
    return out
