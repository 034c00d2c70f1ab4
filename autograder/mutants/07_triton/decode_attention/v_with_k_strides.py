# MISTAKE: loads v with k's strides (copy-pasted K load), right only while v is laid out like k
# EXPECT: address v with its own strides
@triton.jit
def decode_kernel(
    q_ptr, k_ptr, v_ptr, lens_ptr, out_ptr, scale,
    stride_qb, stride_qh, stride_kb, stride_kt, stride_kh, stride_vb, stride_vt, stride_vh,
    stride_ob, stride_oh,
    GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
):
    b = tl.program_id(0)  # sequence
    h = tl.program_id(1)  # query head
    kvh = h // GROUP  # the KV head this query head reads
    seq_len = tl.load(lens_ptr + b)
    d = tl.arange(0, BLOCK_D)
    d_mask = d < HEAD_DIM
    q = tl.load(q_ptr + b * stride_qb + h * stride_qh + d, mask=d_mask, other=0.0).to(tl.float32)

    m_i = float("-inf")  # running max of the scores
    l_i = 0.0  # running sum of exp(score - m_i)
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)  # running sum of exp(score - m_i) * v
    for n0 in range(0, seq_len, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        n_mask = n < seq_len
        kv_mask = n_mask[:, None] & d_mask[None, :]
        k = tl.load(k_ptr + b * stride_kb + n[:, None] * stride_kt + kvh * stride_kh + d[None, :],
                    mask=kv_mask, other=0.0).to(tl.float32)  # (BLOCK_N, BLOCK_D)
        s = tl.sum(k * q[None, :], axis=1) * scale  # (BLOCK_N,)
        s = tl.where(n_mask, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=0))
        alpha = tl.exp(m_i - m_new)  # rescales what was summed under the old max (0 on the first tile)
        p = tl.exp(s - m_new)
        v = tl.load(v_ptr + b * stride_kb + n[:, None] * stride_kt + kvh * stride_kh + d[None, :],
                    mask=kv_mask, other=0.0).to(tl.float32)
        l_i = l_i * alpha + tl.sum(p, axis=0)
        acc = acc * alpha + tl.sum(p[:, None] * v, axis=0)
        m_i = m_new
    out = acc / l_i
    tl.store(out_ptr + b * stride_ob + h * stride_oh + d, out.to(out_ptr.dtype.element_ty), mask=d_mask)


def decode_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seq_lens: torch.Tensor, block_n: int = 16
) -> torch.Tensor:
    """Decode attention (one query token per sequence) over a contiguous KV cache, in Triton.

    q:        (batch, num_heads, head_dim), the new token's queries.
    k, v:     (batch, max_len, num_kv_heads, head_dim); row b holds seq_lens[b] valid tokens,
              the slots after them hold garbage (NaN in the tests) and must never be loaded.
    seq_lens: int32 (batch,), each in [1, max_len].
    block_n:  tokens per tile, a power of two >= 16.
    q, k, v are all float32 or all float16; none of the inputs is modified.

    Query head h reads KV head h // (num_heads // num_kv_heads). One program per (sequence,
    query head) walks its sequence in tiles of block_n tokens with the online softmax (running
    max, running sum, running weighted sum of values, all float32); scores are scaled by
    1 / sqrt(head_dim). head_dim may be any size (mask the lanes past it).
    Returns (batch, num_heads, head_dim) in q's dtype.
    """
    batch, num_heads, head_dim = q.shape
    num_kv_heads = k.shape[2]
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    decode_kernel[(batch, num_heads)](
        q, k, v, seq_lens, out, 1.0 / math.sqrt(head_dim),
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), out.stride(0), out.stride(1),
        GROUP=num_heads // num_kv_heads, HEAD_DIM=head_dim,
        BLOCK_D=triton.next_power_of_2(head_dim), BLOCK_N=block_n,
    )
    return out
