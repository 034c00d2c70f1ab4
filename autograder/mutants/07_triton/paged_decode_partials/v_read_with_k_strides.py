# MISTAKE: passes k_cache's strides for v_cache too, as if the two pools always had the same layout
# EXPECT: v_cache
LOG2E = 1.4426950408889634


@triton.jit
def partials_kernel(
    q_ptr, k_ptr, v_ptr, table_ptr, lens_ptr, part_ptr, lse_ptr, scale_log2, chunk,
    stride_qb, stride_qh, stride_kb, stride_kt, stride_kh, stride_vb, stride_vt, stride_vh,
    stride_tb, stride_pb, stride_ph, stride_ps, stride_lb, stride_lh,
    GROUP: tl.constexpr, PAGE: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    b = tl.program_id(0)
    h = tl.program_id(1)
    split = tl.program_id(2)
    kvh = h // GROUP
    seq_len = tl.load(lens_ptr + b)
    start = split * chunk
    end = tl.minimum(seq_len, start + chunk)  # may be <= start: an empty split
    d = tl.arange(0, BLOCK_D)
    d_mask = d < HEAD_DIM
    q = tl.load(q_ptr + b * stride_qb + h * stride_qh + d, mask=d_mask, other=0.0).to(tl.float32)

    m_i = float("-inf")
    l_i = 0.0
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for n0 in range(start, end, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        n_mask = n < end
        block = tl.load(table_ptr + b * stride_tb + n // PAGE, mask=n_mask, other=0).to(tl.int64)
        row = n % PAGE
        kv_mask = n_mask[:, None] & d_mask[None, :]
        k = tl.load(k_ptr + block[:, None] * stride_kb + row[:, None] * stride_kt + kvh * stride_kh
                    + d[None, :], mask=kv_mask, other=0.0).to(tl.float32)
        s = tl.where(n_mask, tl.sum(k * q[None, :], axis=1) * scale_log2, float("-inf"))  # base 2
        m_new = tl.maximum(m_i, tl.max(s, axis=0))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new)
        v = tl.load(v_ptr + block[:, None] * stride_vb + row[:, None] * stride_vt + kvh * stride_vh
                    + d[None, :], mask=kv_mask, other=0.0).to(tl.float32)
        l_i = l_i * alpha + tl.sum(p, axis=0)
        acc = acc * alpha + tl.sum(p[:, None] * v, axis=0)
        m_i = m_new
    empty = l_i == 0.0
    out = tl.where(empty, 0.0, acc / tl.where(empty, 1.0, l_i))
    lse = tl.where(empty, float("-inf"), m_i + tl.log2(tl.where(empty, 1.0, l_i)))
    tl.store(part_ptr + b * stride_pb + h * stride_ph + split * stride_ps + d, out, mask=d_mask)
    tl.store(lse_ptr + b * stride_lb + h * stride_lh + split, lse)
def paged_decode_partials(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_table: torch.Tensor,
    seq_lens: torch.Tensor,
    num_splits: int,
    block_n: int = 16,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split-K's first pass (flash-decoding): each sequence cut into num_splits chunks, in Triton.

    Arguments as paged_decode, plus num_splits >= 1. Let max_len = max(seq_lens) and
    chunk = ceil(ceil(max_len / num_splits) / block_n) * block_n (whole tiles). Split s covers
    tokens [s * chunk, min((s + 1) * chunk, seq_lens[b])) of sequence b; it is empty when that
    range is. One program per (sequence, head, split), or per (sequence, KV head, split).
    Returns (partials, lse):
      partials: float32 (batch, num_heads, num_splits, head_dim), each split's attention output
                normalised over its own tokens; 0 for an empty split.
      lse:      float32 (batch, num_heads, num_splits), log2 of the sum over the split's tokens of
                2^(score * log2(e)) with score = q.k / sqrt(head_dim) (that is, the natural
                log-sum-exp times log2(e)); -inf for an empty split.
    merge_splits(*paged_decode_partials(...)) is then the attention output.
    """
    batch, num_heads, head_dim = q.shape
    _, page, num_kv_heads, _ = k_cache.shape
    max_len = int(seq_lens.max())
    chunk = triton.cdiv(triton.cdiv(max_len, num_splits), block_n) * block_n  # whole tiles
    partials = torch.empty((batch, num_heads, num_splits, head_dim), dtype=torch.float32, device=q.device)
    lse = torch.empty((batch, num_heads, num_splits), dtype=torch.float32, device=q.device)
    partials_kernel[(batch, num_heads, num_splits)](
        q, k_cache, v_cache, block_table, seq_lens, partials, lse,
        LOG2E / math.sqrt(head_dim), chunk,
        q.stride(0), q.stride(1), *k_cache.stride()[:3], *k_cache.stride()[:3], block_table.stride(0),
        partials.stride(0), partials.stride(1), partials.stride(2), lse.stride(0), lse.stride(1),
        GROUP=num_heads // num_kv_heads, PAGE=page, HEAD_DIM=head_dim,
        BLOCK_D=triton.next_power_of_2(head_dim), BLOCK_N=block_n,
    )
    return partials, lse
