# MISTAKE: computes the softmax with torch in the launcher; the kernel is never launched
# EXPECT: no Triton kernel was launched
# NEEDS: interpreter (only the load trace of Triton's CPU interpreter catches it; compiled on a GPU it passes)
@triton.jit
def softmax_rows_kernel(x_ptr, out_ptr, n_cols, stride_x, stride_out, BLOCK: tl.constexpr):
    row = tl.program_id(0)  # one program per row
    cols = tl.arange(0, BLOCK)  # BLOCK is a power of two >= n_cols
    mask = cols < n_cols
    # masked lanes read -inf: exp(-inf) = 0 adds nothing to the sum and cannot win the max
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
    out.copy_(torch.softmax(x.float(), dim=-1))
    return out
