# VALID: a 1-D grid of batch * num_kv_heads programs numbered KV-head-major (pid = kvh * batch + b), tl.dot in the input dtype with float32 accumulation, block ids and rows computed once per tile
@triton.jit
def gqa_kernel(
    q_ptr, k_ptr, v_ptr, table_ptr, lens_ptr, out_ptr, scale,
    stride_qb, stride_qh, stride_kb, stride_kt, stride_kh, stride_vb, stride_vt, stride_vh,
    stride_tb, stride_ob, stride_oh,
    GROUP: tl.constexpr, BLOCK_G: tl.constexpr, PAGE: tl.constexpr, HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BATCH: tl.constexpr,
):
    pid = tl.program_id(0)
    kvh = pid // BATCH
    b = pid % BATCH
    n_ctx = tl.load(lens_ptr + b)
    g = tl.arange(0, BLOCK_G)
    d = tl.arange(0, BLOCK_D)
    tile_mask = (g < GROUP)[:, None] & (d < HEAD_DIM)[None, :]
    q_ptrs = q_ptr + b * stride_qb + (kvh * GROUP + g)[:, None] * stride_qh + d[None, :]
    q = tl.load(q_ptrs, mask=tile_mask, other=0.0)
    m = tl.zeros([BLOCK_G], tl.float32) - float("inf")
    l = tl.zeros([BLOCK_G], tl.float32)
    o = tl.zeros([BLOCK_G, BLOCK_D], tl.float32)
    for start in range(0, n_ctx, BLOCK_N):
        tok = start + tl.arange(0, BLOCK_N)
        live = tok < n_ctx
        phys = tl.load(table_ptr + b * stride_tb + tok // PAGE, mask=live, other=0).to(tl.int64)
        off_k = phys * stride_kb + (tok % PAGE) * stride_kt + kvh * stride_kh
        off_v = phys * stride_vb + (tok % PAGE) * stride_vt + kvh * stride_vh
        lm = live[:, None] & (d < HEAD_DIM)[None, :]
        k = tl.load(k_ptr + off_k[:, None] + d[None, :], mask=lm, other=0.0)
        v = tl.load(v_ptr + off_v[:, None] + d[None, :], mask=lm, other=0.0)
        if q.dtype == tl.float32:
            s = tl.dot(q, tl.trans(k), input_precision="ieee")
        else:
            s = tl.dot(q, tl.trans(k))  # float16 products, float32 accumulator
        s = tl.where(live[None, :], s * scale, float("-inf"))
        m_next = tl.maximum(m, tl.max(s, 1))
        p = tl.exp(s - m_next[:, None])
        fix = tl.exp(m - m_next)
        l = l * fix + tl.sum(p, 1)
        if q.dtype == tl.float32:
            o = o * fix[:, None] + tl.dot(p, v, input_precision="ieee")
        else:
            o = o * fix[:, None] + tl.dot(p.to(v.dtype), v)
        m = m_next
    o = o / l[:, None]
    o_ptrs = out_ptr + b * stride_ob + (kvh * GROUP + g)[:, None] * stride_oh + d[None, :]
    tl.store(o_ptrs, o.to(out_ptr.dtype.element_ty), mask=tile_mask)


def paged_decode_gqa(q, k_cache, v_cache, block_table, seq_lens, block_n=16):
    batch, num_heads, head_dim = q.shape
    page, num_kv_heads = k_cache.shape[1], k_cache.shape[2]
    group = num_heads // num_kv_heads
    out = torch.empty_like(q)
    gqa_kernel[(num_kv_heads * batch,)](
        q, k_cache, v_cache, block_table, seq_lens, out, head_dim ** -0.5,
        *q.stride()[:2], *k_cache.stride()[:3], *v_cache.stride()[:3], block_table.stride(0),
        *out.stride()[:2],
        GROUP=group, BLOCK_G=max(16, triton.next_power_of_2(group)), PAGE=page, HEAD_DIM=head_dim,
        BLOCK_D=max(16, triton.next_power_of_2(head_dim)), BLOCK_N=block_n, BATCH=batch,
    )
    return out
