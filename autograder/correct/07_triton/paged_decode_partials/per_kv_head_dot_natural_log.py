# VALID: one program per (sequence, KV head, split) scoring the whole query group with tl.dot, natural-log online softmax (tl.exp), lse converted to base 2 at the end
LOG2E = 1.4426950408889634


@triton.jit
def partials_kernel(
    q_ptr, k_ptr, v_ptr, table_ptr, lens_ptr, part_ptr, lse_ptr, scale, chunk,
    stride_qb, stride_qh, stride_kb, stride_kt, stride_kh, stride_vb, stride_vt, stride_vh,
    stride_tb, stride_pb, stride_ph, stride_ps, stride_lb, stride_lh,
    GROUP: tl.constexpr, BLOCK_G: tl.constexpr, PAGE: tl.constexpr, HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
):
    b = tl.program_id(0)
    kvh = tl.program_id(1)
    split = tl.program_id(2)
    seq_len = tl.load(lens_ptr + b)
    start = split * chunk
    end = tl.minimum(start + chunk, seq_len)
    g = tl.arange(0, BLOCK_G)
    g_ok = g < GROUP
    heads = kvh * GROUP + g
    d = tl.arange(0, BLOCK_D)
    d_ok = d < HEAD_DIM
    q = tl.load(q_ptr + b * stride_qb + heads[:, None] * stride_qh + d[None, :],
                mask=g_ok[:, None] & d_ok[None, :], other=0.0).to(tl.float32)
    m = tl.full([BLOCK_G], float("-inf"), dtype=tl.float32)
    l = tl.zeros([BLOCK_G], dtype=tl.float32)
    acc = tl.zeros([BLOCK_G, BLOCK_D], dtype=tl.float32)
    for n0 in range(start, end, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        n_ok = n < end
        blk = tl.load(table_ptr + b * stride_tb + n // PAGE, mask=n_ok, other=0).to(tl.int64)
        row = (n % PAGE).to(tl.int64)
        ok = n_ok[:, None] & d_ok[None, :]
        k = tl.load(k_ptr + blk[:, None] * stride_kb + row[:, None] * stride_kt + kvh * stride_kh + d[None, :],
                    mask=ok, other=0.0).to(tl.float32)
        v = tl.load(v_ptr + blk[:, None] * stride_vb + row[:, None] * stride_vt + kvh * stride_vh + d[None, :],
                    mask=ok, other=0.0).to(tl.float32)
        s = tl.dot(q, tl.trans(k), input_precision="ieee") * scale  # natural-log scores (BLOCK_G, BLOCK_N)
        s = tl.where(n_ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, axis=1))
        alpha = tl.exp(m - m_new)
        p = tl.exp(s - m_new[:, None])
        l = l * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p, v, input_precision="ieee")
        m = m_new
    has = l > 0
    safe_l = tl.where(has, l, 1.0)
    out = acc / safe_l[:, None]  # acc is 0 for an empty split
    lse = tl.where(has, (m + tl.log(safe_l)) * 1.4426950408889634, float("-inf"))  # natural -> base 2
    tl.store(part_ptr + b * stride_pb + heads[:, None] * stride_ph + split * stride_ps + d[None, :], out,
             mask=g_ok[:, None] & d_ok[None, :])
    tl.store(lse_ptr + b * stride_lb + heads * stride_lh + split, lse, mask=g_ok)


def paged_decode_partials(q, k_cache, v_cache, block_table, seq_lens, num_splits, block_n=16):
    batch, num_heads, head_dim = q.shape
    num_blocks, page, num_kv_heads, _ = k_cache.shape
    group = num_heads // num_kv_heads
    longest = int(seq_lens.max().item())
    per_split = -(-longest // num_splits)
    chunk = -(-per_split // block_n) * block_n
    partials = torch.zeros((batch, num_heads, num_splits, head_dim), dtype=torch.float32, device=q.device)
    lse = torch.zeros((batch, num_heads, num_splits), dtype=torch.float32, device=q.device)
    partials_kernel[(batch, num_kv_heads, num_splits)](
        q, k_cache, v_cache, block_table, seq_lens, partials, lse, 1.0 / math.sqrt(head_dim), chunk,
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2), block_table.stride(0),
        partials.stride(0), partials.stride(1), partials.stride(2), lse.stride(0), lse.stride(1),
        GROUP=group, BLOCK_G=max(16, triton.next_power_of_2(group)), PAGE=page, HEAD_DIM=head_dim,
        BLOCK_D=max(16, triton.next_power_of_2(head_dim)), BLOCK_N=block_n,
    )
    return partials, lse
