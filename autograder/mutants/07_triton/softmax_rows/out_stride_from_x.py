# MISTAKE: passes x.stride(0) as the output's row stride too, but out is a new contiguous tensor (x a slice of a wider one)
# EXPECT: x's row stride is not the output's
@triton.jit
def softmax_rows_kernel(x_ptr, out_ptr, n_cols, stride_x, stride_out, BLOCK: tl.constexpr):
    row = tl.program_id(0)  # one program per row
    cols = tl.arange(0, BLOCK)  # BLOCK is a power of two >= n_cols
    mask = cols < n_cols
    x = tl.load(x_ptr + row * stride_x + cols, mask=mask, other=float("-inf")).to(tl.float32)
    e = tl.exp(x - tl.max(x, axis=0))
    out = e / tl.sum(e, axis=0)
    tl.store(out_ptr + row * stride_out + cols, out.to(out_ptr.dtype.element_ty), mask=mask)


def softmax_rows(x: torch.Tensor) -> torch.Tensor:
    """Softmax of each row of x, computed by a Triton kernel with one program per row."""
    out = torch.empty_like(x)  # a slice's empty_like is contiguous: rows x.shape[1] apart
    stride = x.stride(0)  # the same layout as x
    block = triton.next_power_of_2(x.shape[1])
    softmax_rows_kernel[(x.shape[0],)](x, out, x.shape[1], stride, stride, BLOCK=block)
    return out
