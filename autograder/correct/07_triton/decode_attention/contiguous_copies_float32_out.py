# VALID: contiguous copies with strides computed from the shapes, a float32 output cast at the end, a while-style
# loop over tile indices with the scale applied to q once, and the 1/l division folded into the store
@triton.jit
def decode_kernel(
    q_ptr, k_ptr, v_ptr, lens_ptr, out_ptr, scale, max_len, num_heads, num_kv_heads,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
):
    b = tl.program_id(0)
    h = tl.program_id(1)
    kvh = h // (num_heads // num_kv_heads)
    n_valid = tl.load(lens_ptr + b).to(tl.int32)
    d = tl.arange(0, BLOCK_D)
    dm = d < HEAD_DIM
    q = tl.load(q_ptr + (b * num_heads + h) * HEAD_DIM + d, mask=dm, other=0.0).to(tl.float32) * scale
    row0 = (b * max_len * num_kv_heads + kvh) * HEAD_DIM  # token 0 of this sequence and KV head
    m = -float("inf")
    s_sum = 0.0
    o = tl.zeros([BLOCK_D], dtype=tl.float32)
    for tile in range(0, tl.cdiv(n_valid, BLOCK_N)):
        t = tile * BLOCK_N + tl.arange(0, BLOCK_N)
        tm = t < n_valid
        offs = row0 + t[:, None] * (num_kv_heads * HEAD_DIM) + d[None, :]
        kt = tl.load(k_ptr + offs, mask=tm[:, None] & dm[None, :], other=0.0).to(tl.float32)
        sc = tl.where(tm, tl.sum(kt * q[None, :], axis=1), -float("inf"))
        new_m = tl.maximum(m, tl.max(sc, axis=0))
        e = tl.exp(sc - new_m)
        r = tl.exp(m - new_m)
        vt = tl.load(v_ptr + offs, mask=tm[:, None] & dm[None, :], other=0.0).to(tl.float32)
        o = o * r + tl.sum(e[:, None] * vt, axis=0)
        s_sum = s_sum * r + tl.sum(e, axis=0)
        m = new_m
    tl.store(out_ptr + (b * num_heads + h) * HEAD_DIM + d, o * (1.0 / s_sum), mask=dm)


def decode_attention(q, k, v, seq_lens, block_n=16):
    qc, kc, vc = q.contiguous(), k.contiguous(), v.contiguous()
    batch, num_heads, head_dim = qc.shape
    out = torch.empty((batch, num_heads, head_dim), dtype=torch.float32, device=q.device)
    decode_kernel[(batch, num_heads)](
        qc, kc, vc, seq_lens, out, 1.0 / math.sqrt(head_dim), kc.shape[1], num_heads, kc.shape[2],
        HEAD_DIM=head_dim, BLOCK_D=triton.next_power_of_2(head_dim), BLOCK_N=block_n,
    )
    return out.to(q.dtype)
