# VALID: grid (num_heads, batch), weights e^((lse - max) * ln 2) with tl.exp, split lanes padded to 16
LN2 = tl.constexpr(0.6931471805599453)  # a global read inside a kernel must be a constexpr when compiled


@triton.jit
def merge_kernel(part_ptr, lse_ptr, out_ptr, num_splits,
                 stride_pb, stride_ph, stride_ps, stride_lb, stride_lh, stride_ob, stride_oh,
                 HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_S: tl.constexpr):
    h = tl.program_id(0)
    b = tl.program_id(1)
    s = tl.arange(0, BLOCK_S)
    d = tl.arange(0, BLOCK_D)
    s_ok = s < num_splits
    d_ok = d < HEAD_DIM
    row_lse = lse_ptr + b * stride_lb + h * stride_lh
    lse = tl.load(row_lse + s, mask=s_ok, other=float("-inf"))
    top = tl.max(lse, axis=0)
    w = tl.exp((lse - top) * LN2)  # 2^x = e^(x ln 2)
    w = w / tl.sum(w, axis=0)  # normalise the weights first
    ptrs = part_ptr + b * stride_pb + h * stride_ph + s[:, None] * stride_ps + d[None, :]
    part = tl.load(ptrs, mask=s_ok[:, None] & d_ok[None, :], other=0.0)
    tl.store(out_ptr + b * stride_ob + h * stride_oh + d, tl.sum(w[:, None] * part, axis=0), mask=d_ok)


def merge_splits(partials: torch.Tensor, lse: torch.Tensor) -> torch.Tensor:
    batch, num_heads, num_splits, head_dim = partials.shape
    out = partials.new_empty((batch, num_heads, head_dim))
    merge_kernel[(num_heads, batch)](
        partials, lse, out, num_splits,
        *partials.stride()[:3], *lse.stride()[:2], *out.stride()[:2],
        HEAD_DIM=head_dim, BLOCK_D=triton.next_power_of_2(head_dim),
        BLOCK_S=max(16, triton.next_power_of_2(num_splits)),
    )
    return out
