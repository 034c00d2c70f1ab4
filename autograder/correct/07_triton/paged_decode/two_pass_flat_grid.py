# VALID: a 1-D grid of batch * num_heads programs and a two-pass softmax (max and sum first, then the weighted sum), float32 output buffer cast at the end
@triton.jit
def paged_kernel(
    q_ptr, k_ptr, v_ptr, table_ptr, lens_ptr, out_ptr, scale,
    stride_qb, stride_qh, stride_kb, stride_kt, stride_kh, stride_vb, stride_vt, stride_vh,
    stride_tb, stride_ob, stride_oh,
    GROUP: tl.constexpr, PAGE: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    pid = tl.program_id(0)
    num_heads = stride_ob // stride_oh  # out is a contiguous (batch, num_heads, head_dim) buffer
    b = pid // num_heads
    h = pid % num_heads
    n_tok = tl.load(lens_ptr + b)
    offs_d = tl.arange(0, BLOCK_D)
    dm = offs_d < HEAD_DIM
    qv = tl.load(q_ptr + b * stride_qb + h * stride_qh + offs_d, mask=dm, other=0.0).to(tl.float32)
    row_ptr = table_ptr + b * stride_tb
    # pass 1: the maximum and the normaliser
    mx = float("-inf")
    for t0 in range(0, n_tok, BLOCK_N):
        t = t0 + tl.arange(0, BLOCK_N)
        tm = t < n_tok
        blk = tl.load(row_ptr + t // PAGE, mask=tm, other=0).to(tl.int64)
        kk = tl.load(k_ptr + blk[:, None] * stride_kb + (t % PAGE)[:, None] * stride_kt + (h // GROUP) * stride_kh
                     + offs_d[None, :], mask=tm[:, None] & dm[None, :], other=0.0).to(tl.float32)
        sc = tl.where(tm, tl.sum(kk * qv[None, :], 1) * scale, float("-inf"))
        mx = tl.maximum(mx, tl.max(sc, 0))
    den = 0.0
    num = tl.zeros([BLOCK_D], tl.float32)
    # pass 2: weights exp(s - max), now final
    for t0 in range(0, n_tok, BLOCK_N):
        t = t0 + tl.arange(0, BLOCK_N)
        tm = t < n_tok
        blk = tl.load(row_ptr + t // PAGE, mask=tm, other=0).to(tl.int64)
        m2 = tm[:, None] & dm[None, :]
        kk = tl.load(k_ptr + blk[:, None] * stride_kb + (t % PAGE)[:, None] * stride_kt + (h // GROUP) * stride_kh
                     + offs_d[None, :], mask=m2, other=0.0).to(tl.float32)
        vv = tl.load(v_ptr + blk[:, None] * stride_vb + (t % PAGE)[:, None] * stride_vt + (h // GROUP) * stride_vh
                     + offs_d[None, :], mask=m2, other=0.0).to(tl.float32)
        w = tl.where(tm, tl.exp(tl.sum(kk * qv[None, :], 1) * scale - mx), 0.0)
        den += tl.sum(w, 0)
        num += tl.sum(w[:, None] * vv, 0)
    tl.store(out_ptr + b * stride_ob + h * stride_oh + offs_d, num / den, mask=dm)


def paged_decode(q, k_cache, v_cache, block_table, seq_lens, block_n=16):
    batch, num_heads, head_dim = q.shape
    num_kv_heads = k_cache.shape[2]
    out = torch.empty(batch, num_heads, head_dim, dtype=torch.float32, device=q.device)
    kb, kt, kh, _ = k_cache.stride()
    vb, vt, vh, _ = v_cache.stride()
    paged_kernel[(batch * num_heads,)](
        q, k_cache, v_cache, block_table, seq_lens, out, 1.0 / math.sqrt(head_dim),
        q.stride(0), q.stride(1), kb, kt, kh, vb, vt, vh, block_table.stride(0), out.stride(0), out.stride(1),
        GROUP=num_heads // num_kv_heads, PAGE=k_cache.shape[1], HEAD_DIM=head_dim,
        BLOCK_D=triton.next_power_of_2(head_dim), BLOCK_N=block_n,
    )
    return out.to(q.dtype)
