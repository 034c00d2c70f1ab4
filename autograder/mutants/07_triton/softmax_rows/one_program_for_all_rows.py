# MISTAKE: launches a single program that loops over the rows
# EXPECT: one program per row
# NEEDS: interpreter (only the load trace of Triton's CPU interpreter catches it; compiled on a GPU it passes)
@triton.jit
def softmax_rows_kernel(x_ptr, out_ptr, n_rows, n_cols, stride_x, stride_out, BLOCK: tl.constexpr):
    for row in range(0, n_rows):
        cols = tl.arange(0, BLOCK)
        mask = cols < n_cols
        x = tl.load(x_ptr + row * stride_x + cols, mask=mask, other=float("-inf")).to(tl.float32)
        e = tl.exp(x - tl.max(x, axis=0))
        out = e / tl.sum(e, axis=0)
        tl.store(out_ptr + row * stride_out + cols, out.to(out_ptr.dtype.element_ty), mask=mask)


def softmax_rows(x: torch.Tensor) -> torch.Tensor:
    """Softmax of each row of x, computed by a Triton kernel with one program per row.

    x: (rows, cols) float32 or float16, rows >= 1, cols >= 1 (any size, not only powers of two).
       Rows may have any stride (x can be a slice of a wider tensor, x.stride(0) > cols);
       columns are contiguous. x is not modified.
    Returns a new (rows, cols) tensor in x's dtype; each row sums to 1. Compute in float32 and
    subtract the row's maximum before exp, so scores of 1e4 do not overflow.
    """
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    block = triton.next_power_of_2(x.shape[1])
    softmax_rows_kernel[(1,)](x, out, x.shape[0], x.shape[1], x.stride(0), out.stride(0), BLOCK=block)
    return out
