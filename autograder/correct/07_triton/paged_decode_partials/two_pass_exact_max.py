# VALID: two passes per split (first the exact maximum over the split's keys, then sums with no rescaling); the chunk is computed in the kernel from max_len
@triton.jit
def partials_kernel(
    q_ptr, k_ptr, v_ptr, table_ptr, lens_ptr, part_ptr, lse_ptr, scale_log2, max_len, num_splits,
    stride_qb, stride_qh, stride_kb, stride_kt, stride_kh, stride_vb, stride_vt, stride_vh,
    stride_tb, stride_pb, stride_ph, stride_ps, stride_lb, stride_lh,
    GROUP: tl.constexpr, PAGE: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    b = tl.program_id(0)
    h = tl.program_id(1)
    split = tl.program_id(2)
    chunk = tl.cdiv(tl.cdiv(max_len, num_splits), BLOCK_N) * BLOCK_N
    seq_len = tl.load(lens_ptr + b)
    lo = split * chunk
    hi = tl.minimum(lo + chunk, seq_len)
    d = tl.arange(0, BLOCK_D)
    d_ok = d < HEAD_DIM
    k_head = k_ptr + (h // GROUP) * stride_kh
    v_head = v_ptr + (h // GROUP) * stride_vh
    q = tl.load(q_ptr + b * stride_qb + h * stride_qh + d, mask=d_ok, other=0.0).to(tl.float32) * scale_log2

    top = float("-inf")  # pass 1: the split's largest (base-2) score
    for n0 in range(lo, hi, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        ok = n < hi
        blk = tl.load(table_ptr + b * stride_tb + n // PAGE, mask=ok, other=0).to(tl.int64)
        k = tl.load(k_head + blk[:, None] * stride_kb + (n % PAGE)[:, None] * stride_kt + d[None, :],
                    mask=ok[:, None] & d_ok[None, :], other=0.0).to(tl.float32)
        s = tl.where(ok, tl.sum(k * q[None, :], axis=1), float("-inf"))
        top = tl.maximum(top, tl.max(s, axis=0))

    total = 0.0  # pass 2: sums relative to the exact maximum
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for n0 in range(lo, hi, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        ok = n < hi
        blk = tl.load(table_ptr + b * stride_tb + n // PAGE, mask=ok, other=0).to(tl.int64)
        kv_ok = ok[:, None] & d_ok[None, :]
        k = tl.load(k_head + blk[:, None] * stride_kb + (n % PAGE)[:, None] * stride_kt + d[None, :],
                    mask=kv_ok, other=0.0).to(tl.float32)
        v = tl.load(v_head + blk[:, None] * stride_vb + (n % PAGE)[:, None] * stride_vt + d[None, :],
                    mask=kv_ok, other=0.0).to(tl.float32)
        p = tl.where(ok, tl.exp2(tl.sum(k * q[None, :], axis=1) - top), 0.0)
        total += tl.sum(p, axis=0)
        acc += tl.sum(p[:, None] * v, axis=0)

    if hi > lo:
        out = acc / total
        lse = top + tl.log2(total)
    else:
        out = tl.zeros([BLOCK_D], dtype=tl.float32)
        lse = float("-inf")
    tl.store(part_ptr + b * stride_pb + h * stride_ph + split * stride_ps + d, out, mask=d_ok)
    tl.store(lse_ptr + b * stride_lb + h * stride_lh + split, lse)


def paged_decode_partials(q, k_cache, v_cache, block_table, seq_lens, num_splits, block_n=16):
    batch, num_heads, head_dim = q.shape
    page, num_kv_heads = k_cache.shape[1], k_cache.shape[2]
    partials = q.new_empty((batch, num_heads, num_splits, head_dim), dtype=torch.float32)
    lse = q.new_empty((batch, num_heads, num_splits), dtype=torch.float32)
    partials_kernel[(batch, num_heads, num_splits)](
        q, k_cache, v_cache, block_table, seq_lens, partials, lse,
        math.log2(math.e) / math.sqrt(head_dim), int(seq_lens.max()), num_splits,
        q.stride(0), q.stride(1), *k_cache.stride()[:3], *v_cache.stride()[:3], block_table.stride(0),
        *partials.stride()[:3], *lse.stride()[:2],
        GROUP=num_heads // num_kv_heads, PAGE=page, HEAD_DIM=head_dim,
        BLOCK_D=triton.next_power_of_2(head_dim), BLOCK_N=block_n,
    )
    return partials, lse
