"""A row-wise softmax in Triton: the smallest kernel with every idea chapter 07 builds on.

One program per row; ``tl.arange`` gives the lanes, a mask keeps them inside the row, and masked
lanes load ``-inf`` so they add nothing to the sum and never win the max. The row's maximum is
subtracted before ``exp`` so that large scores do not overflow; the arithmetic is fp32 whatever
the input dtype. Import it through :mod:`kvlib.kernels` (which picks the interpreter without CUDA).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kvlib.validate import require_tensor

__all__ = ["softmax_rows"]

_FLOATS = (torch.float32, torch.float16, torch.bfloat16)


@triton.jit
def _softmax_rows_kernel(x_ptr, out_ptr, n_cols, stride_x, stride_out, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    x = tl.load(x_ptr + row * stride_x + cols, mask=mask, other=float("-inf")).to(tl.float32)
    e = tl.exp(x - tl.max(x, axis=0))
    tl.store(
        out_ptr + row * stride_out + cols, (e / tl.sum(e, axis=0)).to(out_ptr.dtype.element_ty), mask=mask
    )


def softmax_rows(x: torch.Tensor) -> torch.Tensor:
    """Softmax of each row of ``x`` ``(rows, cols)``, in ``x.dtype`` (fp32 inside); ``x`` is not modified.

    Rows may have any stride (a slice of a wider tensor); columns must be contiguous."""
    require_tensor("x", x, dims=2, layout="(rows, cols)")
    if x.dtype not in _FLOATS:
        raise ValueError(f"x must be float32, float16 or bfloat16, got {x.dtype}")
    rows, cols = x.shape
    if rows < 1 or cols < 1:
        raise ValueError(f"x needs at least one row and one column, got shape {tuple(x.shape)}")
    if x.stride(1) != 1:
        raise ValueError(f"x's columns must be contiguous (stride 1), got strides {x.stride()}")
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    block = triton.next_power_of_2(cols)
    _softmax_rows_kernel[(rows,)](x, out, cols, x.stride(0), out.stride(0), BLOCK=block)
    return out
