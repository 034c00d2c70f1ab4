# MISTAKE: starts the running max at 0 instead of -inf (fine while some score is above -100)
# EXPECT: running max
@triton.jit
def paged_kernel(
    q_ptr, k_ptr, v_ptr, table_ptr, lens_ptr, out_ptr, scale,
    stride_qb, stride_qh, stride_kb, stride_kt, stride_kh, stride_vb, stride_vt, stride_vh,
    stride_tb, stride_ob, stride_oh,
    GROUP: tl.constexpr, PAGE: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    b = tl.program_id(0)
    h = tl.program_id(1)
    kvh = h // GROUP
    seq_len = tl.load(lens_ptr + b)
    d = tl.arange(0, BLOCK_D)
    d_mask = d < HEAD_DIM
    q = tl.load(q_ptr + b * stride_qb + h * stride_qh + d, mask=d_mask, other=0.0).to(tl.float32)

    m_i = 0.0
    l_i = 0.0
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for n0 in range(0, seq_len, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        n_mask = n < seq_len
        # logical token n lives in physical block table[b, n // PAGE], at row n % PAGE
        block = tl.load(table_ptr + b * stride_tb + n // PAGE, mask=n_mask, other=0).to(tl.int64)
        row = n % PAGE
        kv_mask = n_mask[:, None] & d_mask[None, :]
        k = tl.load(k_ptr + block[:, None] * stride_kb + row[:, None] * stride_kt + kvh * stride_kh
                    + d[None, :], mask=kv_mask, other=0.0).to(tl.float32)
        s = tl.where(n_mask, tl.sum(k * q[None, :], axis=1) * scale, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=0))
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(s - m_new)
        v = tl.load(v_ptr + block[:, None] * stride_vb + row[:, None] * stride_vt + kvh * stride_vh
                    + d[None, :], mask=kv_mask, other=0.0).to(tl.float32)
        l_i = l_i * alpha + tl.sum(p, axis=0)
        acc = acc * alpha + tl.sum(p[:, None] * v, axis=0)
        m_i = m_new
    out = acc / l_i
    tl.store(out_ptr + b * stride_ob + h * stride_oh + d, out.to(out_ptr.dtype.element_ty), mask=d_mask)
def paged_decode(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_table: torch.Tensor,
    seq_lens: torch.Tensor,
    block_n: int = 16,
) -> torch.Tensor:
    """Decode attention over a paged KV cache, in Triton: exercise 2 read through a block table.

    q:           (batch, num_heads, head_dim).
    k_cache, v_cache: (num_blocks, block_size, num_kv_heads, head_dim), the pool of physical blocks;
                 they may be views with any strides (e.g. the two halves of one KV tensor):
                 read them in place through their strides, never copy the pool.
    block_table: int32 (batch, max_blocks); logical token t of sequence b lives in physical block
                 block_table[b, t // block_size], row t % block_size. Entries past a sequence's
                 last block are arbitrary and must not be followed: mask the block-table load too.
                 block_table may be a column slice of a wider table: use its row stride.
    seq_lens:    int32 (batch,), each in [1, max_blocks * block_size].
    block_n:     tokens per tile, a power of two >= 16 (a tile may span several blocks, and blocks
                 may be smaller or larger than a tile).
    Everything else as in decode_attention: float32 or float16, inputs not modified, query head h
    reads KV head h // group, scale 1 / sqrt(head_dim), any head_dim, slots past seq_lens[b] never
    loaded. Returns (batch, num_heads, head_dim) in q's dtype.
    """
    batch, num_heads, head_dim = q.shape
    _, page, num_kv_heads, _ = k_cache.shape
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    paged_kernel[(batch, num_heads)](
        q, k_cache, v_cache, block_table, seq_lens, out, 1.0 / math.sqrt(head_dim),
        q.stride(0), q.stride(1), *k_cache.stride()[:3], *v_cache.stride()[:3],
        block_table.stride(0), out.stride(0), out.stride(1),
        GROUP=num_heads // num_kv_heads, PAGE=page, HEAD_DIM=head_dim,
        BLOCK_D=triton.next_power_of_2(head_dim), BLOCK_N=block_n,
    )
    return out
