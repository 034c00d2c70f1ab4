# VALID: a flat grid of batch * num_heads programs, scores with tl.dot on a 16-row tile, base-2 online softmax
@triton.jit
def decode_kernel(
    q_ptr, k_ptr, v_ptr, lens_ptr, out_ptr, qk_scale_log2,
    stride_qb, stride_qh, stride_kb, stride_kt, stride_kh, stride_vb, stride_vt, stride_vh,
    stride_ob, stride_oh, num_heads,
    GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid = tl.program_id(0)
    b = pid // num_heads
    h = pid % num_heads
    kv_head = h // GROUP
    length = tl.load(lens_ptr + b)
    dims = tl.arange(0, BLOCK_D)
    rows = tl.arange(0, 16)  # tl.dot needs 16 rows: row 0 holds the query, the others zeros
    q_tile = tl.load(q_ptr + b * stride_qb + h * stride_qh + rows[:, None] * 0 + dims[None, :],
                     mask=(rows[:, None] == 0) & (dims[None, :] < HEAD_DIM), other=0.0).to(tl.float32)
    m = tl.full([16], float("-inf"), dtype=tl.float32)
    denom = tl.zeros([16], dtype=tl.float32)
    acc = tl.zeros([16, BLOCK_D], dtype=tl.float32)
    num_tiles = tl.cdiv(length, BLOCK_N)
    for i in range(0, num_tiles):
        toks = i * BLOCK_N + tl.arange(0, BLOCK_N)
        live = toks < length
        ld_mask = live[:, None] & (dims[None, :] < HEAD_DIM)
        keys = tl.load(k_ptr + b * stride_kb + kv_head * stride_kh + toks[:, None] * stride_kt + dims[None, :],
                       mask=ld_mask, other=0.0).to(tl.float32)
        vals = tl.load(v_ptr + b * stride_vb + kv_head * stride_vh + toks[:, None] * stride_vt + dims[None, :],
                       mask=ld_mask, other=0.0).to(tl.float32)
        scores = tl.dot(q_tile, tl.trans(keys), input_precision="ieee") * qk_scale_log2  # (16, BLOCK_N)
        scores = tl.where(live[None, :], scores, float("-inf"))
        m_next = tl.maximum(m, tl.max(scores, axis=1))
        corr = tl.exp2(m - m_next)
        w = tl.exp2(scores - m_next[:, None])
        denom = denom * corr + tl.sum(w, axis=1)
        acc = acc * corr[:, None] + tl.dot(w, vals, input_precision="ieee")
        m = m_next
    result = acc / denom[:, None]
    tl.store(out_ptr + b * stride_ob + h * stride_oh + rows[:, None] * 0 + dims[None, :],
             result.to(out_ptr.dtype.element_ty), mask=(rows[:, None] == 0) & (dims[None, :] < HEAD_DIM))


def decode_attention(q, k, v, seq_lens, block_n=16):
    batch, num_heads, head_dim = q.shape
    group = num_heads // k.shape[2]
    out = torch.empty_like(q)
    decode_kernel[(batch * num_heads,)](
        q, k, v, seq_lens, out, 1.4426950408889634 / head_dim**0.5,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), k.stride(2), v.stride(0), v.stride(1), v.stride(2),
        out.stride(0), out.stride(1), num_heads,
        GROUP=group, HEAD_DIM=head_dim, BLOCK_D=max(16, triton.next_power_of_2(head_dim)), BLOCK_N=block_n,
    )
    return out
