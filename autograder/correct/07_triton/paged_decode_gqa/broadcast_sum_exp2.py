# VALID: scores and the weighted sum by broadcast multiply-and-sum (no tl.dot, so BLOCK_G = next_power_of_2(group) with no minimum), base-2 softmax, a float32 buffer cast to q's dtype at the end
@triton.jit
def gqa_kernel(
    q_ptr, k_ptr, v_ptr, table_ptr, lens_ptr, out_ptr, scale,
    stride_qb, stride_qh, stride_kb, stride_kt, stride_kh, stride_vb, stride_vt, stride_vh,
    stride_tb, stride_ob, stride_oh,
    GROUP: tl.constexpr, BLOCK_G: tl.constexpr, PAGE: tl.constexpr, HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
):
    b = tl.program_id(0)
    j = tl.program_id(1)
    length = tl.load(lens_ptr + b)
    rows = tl.arange(0, BLOCK_G)
    cols = tl.arange(0, BLOCK_D)
    rmask = rows < GROUP
    cmask = cols < HEAD_DIM
    q = tl.load(q_ptr + b * stride_qb + (j * GROUP + rows)[:, None] * stride_qh + cols[None, :],
                mask=rmask[:, None] & cmask[None, :], other=0.0).to(tl.float32)
    q = q * (scale * 1.4426950408889634)
    run_max = tl.full([BLOCK_G], float("-inf"), tl.float32)
    run_sum = tl.zeros([BLOCK_G], tl.float32)
    acc = tl.zeros([BLOCK_G, BLOCK_D], tl.float32)
    for first in range(0, length, BLOCK_N):
        t = first + tl.arange(0, BLOCK_N)
        tmask = t < length
        page_id = tl.load(table_ptr + b * stride_tb + t // PAGE, mask=tmask, other=0).to(tl.int64)
        slot = (t % PAGE).to(tl.int64)
        m2 = tmask[:, None] & cmask[None, :]
        k = tl.load(k_ptr + page_id[:, None] * stride_kb + slot[:, None] * stride_kt + j * stride_kh + cols[None, :],
                    mask=m2, other=0.0).to(tl.float32)  # (BLOCK_N, BLOCK_D)
        v = tl.load(v_ptr + page_id[:, None] * stride_vb + slot[:, None] * stride_vt + j * stride_vh + cols[None, :],
                    mask=m2, other=0.0).to(tl.float32)
        s = tl.sum(q[:, None, :] * k[None, :, :], axis=2)  # (BLOCK_G, BLOCK_N)
        s = tl.where(tmask[None, :], s, float("-inf"))
        new_max = tl.maximum(run_max, tl.max(s, axis=1))
        w = tl.exp2(s - new_max[:, None])
        corr = tl.exp2(run_max - new_max)
        run_sum = run_sum * corr + tl.sum(w, axis=1)
        acc = acc * corr[:, None] + tl.sum(w[:, :, None] * v[None, :, :], axis=1)
        run_max = new_max
    tl.store(out_ptr + b * stride_ob + (j * GROUP + rows)[:, None] * stride_oh + cols[None, :],
             acc / run_sum[:, None], mask=rmask[:, None] & cmask[None, :])


def paged_decode_gqa(q, k_cache, v_cache, block_table, seq_lens, block_n=16):
    batch, num_heads, head_dim = q.shape
    num_blocks, page, num_kv_heads, _ = k_cache.shape
    group = num_heads // num_kv_heads
    out = torch.empty((batch, num_heads, head_dim), dtype=torch.float32, device=q.device)
    gqa_kernel[(batch, num_kv_heads)](
        q, k_cache, v_cache, block_table, seq_lens, out, 1.0 / math.sqrt(head_dim),
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2), block_table.stride(0),
        out.stride(0), out.stride(1),
        GROUP=group, BLOCK_G=triton.next_power_of_2(group), PAGE=page, HEAD_DIM=head_dim,
        BLOCK_D=triton.next_power_of_2(head_dim), BLOCK_N=block_n,
    )
    return out.to(q.dtype)
