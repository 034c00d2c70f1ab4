# MISTAKE: gathers each sequence's keys in torch and computes the splits without a Triton kernel
# EXPECT: no Triton kernel was launched
# NEEDS: interpreter (only the load trace of Triton's CPU interpreter catches it; compiled on a GPU it passes)
LOG2E = 1.4426950408889634


def paged_decode_partials(q, k_cache, v_cache, block_table, seq_lens, num_splits, block_n=16):
    """Split-K's first pass."""
    batch, num_heads, head_dim = q.shape
    page, num_kv_heads = k_cache.shape[1], k_cache.shape[2]
    group = num_heads // num_kv_heads
    max_len = int(seq_lens.max())
    chunk = -(-(-(-max_len // num_splits)) // block_n) * block_n
    partials = torch.zeros(batch, num_heads, num_splits, head_dim, device=q.device)
    lse = torch.full((batch, num_heads, num_splits), float("-inf"), device=q.device)
    for b in range(batch):
        n = int(seq_lens[b])
        t = torch.arange(n, device=q.device)
        blocks = block_table[b, t // page].long()
        k = k_cache[blocks, t % page].float().repeat_interleave(group, dim=1)  # (n, H, D)
        v = v_cache[blocks, t % page].float().repeat_interleave(group, dim=1)
        s = torch.einsum("hd,nhd->hn", q[b].float(), k) * LOG2E / math.sqrt(head_dim)
        for sp in range(num_splits):
            lo, hi = sp * chunk, min((sp + 1) * chunk, n)
            if hi > lo:
                x = s[:, lo:hi]
                m = x.amax(-1, keepdim=True)
                w = torch.exp2(x - m)
                partials[b, :, sp] = torch.einsum("hn,nhd->hd", w, v[lo:hi]) / w.sum(-1, keepdim=True)
                lse[b, :, sp] = m[:, 0] + torch.log2(w.sum(-1))
    return partials, lse
