# VALID: loops over the splits one at a time with scalar lse loads, merging online (running max, rescaled sums)
@triton.jit
def merge_kernel(part_ptr, lse_ptr, out_ptr, num_splits,
                 stride_pb, stride_ph, stride_ps, stride_lb, stride_lh, stride_ob, stride_oh,
                 HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_S: tl.constexpr):
    b = tl.program_id(0)
    h = tl.program_id(1)
    d = tl.arange(0, BLOCK_D)
    d_mask = d < HEAD_DIM
    m = float("-inf")
    total = 0.0
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for s in range(0, num_splits):
        lse_s = tl.load(lse_ptr + b * stride_lb + h * stride_lh + s)
        m_new = tl.maximum(m, lse_s)
        # an empty split (-inf) before any finite one: keep everything at zero, no -inf - -inf
        alpha = tl.where(m_new == float("-inf"), 1.0, tl.exp2(m - m_new))
        w = tl.where(lse_s == float("-inf"), 0.0, tl.exp2(lse_s - m_new))
        part = tl.load(part_ptr + b * stride_pb + h * stride_ph + s * stride_ps + d, mask=d_mask, other=0.0)
        acc = acc * alpha + w * part
        total = total * alpha + w
        m = m_new
    tl.store(out_ptr + b * stride_ob + h * stride_oh + d, acc / total, mask=d_mask)


def merge_splits(partials: torch.Tensor, lse: torch.Tensor) -> torch.Tensor:
    batch, num_heads, num_splits, head_dim = partials.shape
    out = torch.empty((batch, num_heads, head_dim), dtype=torch.float32, device=partials.device)
    merge_kernel[(batch, num_heads)](
        partials, lse, out, num_splits,
        partials.stride(0), partials.stride(1), partials.stride(2), lse.stride(0), lse.stride(1),
        out.stride(0), out.stride(1),
        HEAD_DIM=head_dim, BLOCK_D=triton.next_power_of_2(head_dim), BLOCK_S=1,
    )
    return out
