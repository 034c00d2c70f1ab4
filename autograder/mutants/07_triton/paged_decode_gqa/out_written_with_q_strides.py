# MISTAKE: stores the output with q's strides, though the output it allocates is contiguous and q may be a view
# EXPECT: out.stride
@triton.jit
def gqa_kernel(
    q_ptr, k_ptr, v_ptr, table_ptr, lens_ptr, out_ptr, scale,
    stride_qb, stride_qh, stride_kb, stride_kt, stride_kh, stride_vb, stride_vt, stride_vh,
    stride_tb, stride_ob, stride_oh,
    GROUP: tl.constexpr, BLOCK_G: tl.constexpr, PAGE: tl.constexpr, HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, IEEE: tl.constexpr,
):
    b = tl.program_id(0)
    kvh = tl.program_id(1)  # one program per KV head: it serves the whole query group
    seq_len = tl.load(lens_ptr + b)
    g = tl.arange(0, BLOCK_G)
    g_mask = g < GROUP
    heads = kvh * GROUP + g  # the query heads that share this KV head
    d = tl.arange(0, BLOCK_D)
    d_mask = d < HEAD_DIM
    q = tl.load(q_ptr + b * stride_qb + heads[:, None] * stride_qh + d[None, :],
                mask=g_mask[:, None] & d_mask[None, :], other=0.0)  # (BLOCK_G, BLOCK_D), q's dtype

    m_i = tl.full([BLOCK_G], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_G], dtype=tl.float32)
    acc = tl.zeros([BLOCK_G, BLOCK_D], dtype=tl.float32)
    for n0 in range(0, seq_len, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        n_mask = n < seq_len
        block = tl.load(table_ptr + b * stride_tb + n // PAGE, mask=n_mask, other=0).to(tl.int64)
        row = n % PAGE
        kv_mask = n_mask[:, None] & d_mask[None, :]
        k = tl.load(k_ptr + block[:, None] * stride_kb + row[:, None] * stride_kt + kvh * stride_kh
                    + d[None, :], mask=kv_mask, other=0.0)  # read once for the whole group
        # tl.dot multiplies in the inputs' dtype (tensor cores for fp16) and accumulates in fp32;
        # in fp32, "ieee" asks for true fp32 products instead of the GPU's default TF32
        if IEEE:
            s = tl.dot(q, tl.trans(k), input_precision="ieee")
        else:
            s = tl.dot(q, tl.trans(k))
        s = tl.where(n_mask[None, :], s * scale, float("-inf"))  # (BLOCK_G, BLOCK_N)
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(s - m_new[:, None])
        v = tl.load(v_ptr + block[:, None] * stride_vb + row[:, None] * stride_vt + kvh * stride_vh
                    + d[None, :], mask=kv_mask, other=0.0)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        if IEEE:
            pv = tl.dot(p.to(v.dtype), v, input_precision="ieee")
        else:
            pv = tl.dot(p.to(v.dtype), v)
        acc = acc * alpha[:, None] + pv
        m_i = m_new
    out = acc / l_i[:, None]
    tl.store(out_ptr + b * stride_ob + heads[:, None] * stride_oh + d[None, :],
             out.to(out_ptr.dtype.element_ty), mask=g_mask[:, None] & d_mask[None, :])
def paged_decode_gqa(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_table: torch.Tensor,
    seq_lens: torch.Tensor,
    block_n: int = 16,
) -> torch.Tensor:
    """Paged decode attention with one program per (sequence, KV head), in Triton.

    Arguments and result as paged_decode (float32 or float16, inputs not modified, any head_dim,
    any group size num_heads / num_kv_heads, scale 1 / sqrt(head_dim), slots past seq_lens[b]
    never loaded). The program for KV head j computes all the query heads that share it
    (j * group ... (j + 1) * group - 1) together, so each key and value is loaded once per
    decode step, not once per query head: launch exactly batch * num_kv_heads programs.
    """
    batch, num_heads, head_dim = q.shape
    _, page, num_kv_heads, _ = k_cache.shape
    group = num_heads // num_kv_heads
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    gqa_kernel[(batch, num_kv_heads)](
        q, k_cache, v_cache, block_table, seq_lens, out, 1.0 / math.sqrt(head_dim),
        q.stride(0), q.stride(1), *k_cache.stride()[:3], *v_cache.stride()[:3],
        block_table.stride(0), q.stride(0), q.stride(1),
        GROUP=group, BLOCK_G=max(16, triton.next_power_of_2(group)),  # tl.dot needs >= 16 rows
        PAGE=page, HEAD_DIM=head_dim, BLOCK_D=max(16, triton.next_power_of_2(head_dim)), BLOCK_N=block_n,
        IEEE=q.dtype == torch.float32,
    )
    return out
