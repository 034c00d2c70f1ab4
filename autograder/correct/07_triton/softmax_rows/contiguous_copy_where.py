# VALID: copies x to a contiguous float32 tensor first, loads with other=0 and masks with tl.where, casts after
@triton.jit
def softmax_rows_kernel(x_ptr, out_ptr, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    inside = offs < n_cols
    x = tl.load(x_ptr + row * n_cols + offs, mask=inside, other=0.0)
    x = tl.where(inside, x, -float("inf"))
    shifted = x - tl.max(x, axis=0)
    num = tl.where(inside, tl.exp(shifted), 0.0)
    tl.store(out_ptr + row * n_cols + offs, num / tl.sum(num, axis=0), mask=inside)


def softmax_rows(x: torch.Tensor) -> torch.Tensor:
    x32 = x.float().contiguous()
    n_rows, n_cols = x32.shape
    out = torch.empty_like(x32)
    softmax_rows_kernel[(n_rows,)](x32, out, n_cols, BLOCK=max(16, triton.next_power_of_2(n_cols)))
    return out.to(x.dtype)
