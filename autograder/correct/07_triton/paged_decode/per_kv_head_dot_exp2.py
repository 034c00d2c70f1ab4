# VALID: one program per (sequence, KV head) serving its whole query group with tl.dot, base-2 softmax (exp2)
@triton.jit
def paged_kernel(
    q_ptr, k_ptr, v_ptr, table_ptr, lens_ptr, out_ptr, scale,
    stride_qb, stride_qh, stride_kb, stride_kt, stride_kh, stride_vb, stride_vt, stride_vh,
    stride_tb, stride_ob, stride_oh,
    GROUP: tl.constexpr, PAGE: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    BLOCK_G: tl.constexpr = 16 if GROUP <= 16 else GROUP
    b = tl.program_id(0)
    kvh = tl.program_id(1)
    seq_len = tl.load(lens_ptr + b)
    g = tl.arange(0, BLOCK_G)
    heads = kvh * GROUP + g
    d = tl.arange(0, BLOCK_D)
    qmask = (g < GROUP)[:, None] & (d < HEAD_DIM)[None, :]
    q = tl.load(q_ptr + b * stride_qb + heads[:, None] * stride_qh + d[None, :], mask=qmask, other=0.0)
    q = q.to(tl.float32) * (scale * 1.4426950408889634)  # scores in base 2
    m = tl.full([BLOCK_G], float("-inf"), tl.float32)
    l = tl.zeros([BLOCK_G], tl.float32)
    acc = tl.zeros([BLOCK_G, BLOCK_D], tl.float32)
    for start in range(0, seq_len, BLOCK_N):
        tok = start + tl.arange(0, BLOCK_N)
        valid = tok < seq_len
        phys = tl.load(table_ptr + b * stride_tb + tok // PAGE, mask=valid, other=0).to(tl.int64)
        kvmask = valid[:, None] & (d < HEAD_DIM)[None, :]
        base_k = k_ptr + phys * stride_kb + (tok % PAGE) * stride_kt + kvh * stride_kh
        base_v = v_ptr + phys * stride_vb + (tok % PAGE) * stride_vt + kvh * stride_vh
        k = tl.load(base_k[:, None] + d[None, :], mask=kvmask, other=0.0).to(tl.float32)
        v = tl.load(base_v[:, None] + d[None, :], mask=kvmask, other=0.0).to(tl.float32)
        s = tl.dot(q, tl.trans(k), input_precision="ieee")
        s = tl.where(valid[None, :], s, float("-inf"))
        m2 = tl.maximum(m, tl.max(s, 1))
        p = tl.exp2(s - m2[:, None])
        r = tl.exp2(m - m2)
        l = l * r + tl.sum(p, 1)
        acc = acc * r[:, None] + tl.dot(p, v, input_precision="ieee")
        m = m2
    res = acc / l[:, None]
    tl.store(out_ptr + b * stride_ob + heads[:, None] * stride_oh + d[None, :], res.to(out_ptr.dtype.element_ty),
             mask=qmask)


def paged_decode(q, k_cache, v_cache, block_table, seq_lens, block_n=16):
    batch, num_heads, head_dim = q.shape
    num_kv_heads = k_cache.shape[2]
    out = torch.empty_like(q)
    paged_kernel[(batch, num_kv_heads)](
        q, k_cache, v_cache, block_table, seq_lens, out, head_dim ** -0.5,
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2), block_table.stride(0), out.stride(0),
        out.stride(1),
        GROUP=num_heads // num_kv_heads, PAGE=k_cache.shape[1], HEAD_DIM=head_dim,
        BLOCK_D=max(16, triton.next_power_of_2(head_dim)), BLOCK_N=block_n,
    )
    return out
