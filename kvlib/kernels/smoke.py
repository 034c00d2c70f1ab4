"""A ten-second check that Triton really runs here (used by the setup notebook, chapter 00).

Runs a tiny Triton kernel (``y = alpha * x + 1``) in whichever mode :mod:`kvlib.kernels` selected
(CUDA, or the CPU interpreter) and compares it with PyTorch. A broken setup tends to fail quietly
(an interpreter that was enabled too late, a kernel that never wrote its output and left zeros), so
the check looks for exactly those symptoms and says which one it saw.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

# importing kvlib.kernels sets TRITON_INTERPRET when CUDA is absent; Triton reads it when a kernel is
# decorated, so this import must stay above the @triton.jit below
from kvlib.kernels import interpreter_active
from kvlib.validate import require_int, require_number

__all__ = ["triton_smoke_test"]


@triton.jit
def _scaled_add_one_kernel(x_ptr, y_ptr, n, alpha, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    tl.store(y_ptr + offs, alpha * x + 1.0, mask=mask)


def triton_smoke_test(n: int = 1000, alpha: float = 3.0) -> str:
    """Run a tiny Triton kernel and compare it with torch.

    Returns ``"interpreter (CPU)"`` or ``"CUDA <device name>"``. Raises RuntimeError with the
    likely cause if the output is all zeros, untouched, or numerically wrong. ``n`` must be an int
    >= 1 and ``alpha`` a finite number: an empty or NaN run would be misread as a broken setup."""
    n = require_int("n", n, minimum=1)
    alpha = require_number("alpha", alpha, minimum=None)
    interp = interpreter_active()
    if not interp and not torch.cuda.is_available():
        raise RuntimeError(
            "Triton has neither CUDA nor its CPU interpreter: TRITON_INTERPRET is set to 0 but no GPU "
            "is visible. Unset TRITON_INTERPRET (kvlib.kernels then picks the interpreter) and restart."
        )
    device = torch.device("cpu" if interp else "cuda")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, generator=gen).to(device)
    sentinel = -12345.0
    y = torch.full_like(x, sentinel)
    block = 256
    _scaled_add_one_kernel[(triton.cdiv(n, block),)](x, y, n, alpha, BLOCK=block)
    if device.type == "cuda":
        torch.cuda.synchronize()
    expected = alpha * x + 1.0
    if torch.all(y == 0):
        raise RuntimeError(
            "the Triton smoke kernel returned all zeros: the kernel ran in a mode that does not write "
            "to these tensors (was TRITON_INTERPRET set after triton kernels were defined?). Restart "
            "the kernel/process and import kvlib.kernels before defining any @triton.jit function."
        )
    if torch.any(y == sentinel):
        raise RuntimeError(
            f"the Triton smoke kernel left {int((y == sentinel).sum())} of {n} outputs untouched: "
            "the launch grid or the store mask is wrong, or the kernel did not run"
        )
    if not torch.allclose(y, expected, rtol=1e-5, atol=1e-5):
        err = float((y - expected).abs().max())
        raise RuntimeError(f"the Triton smoke kernel disagrees with torch (max abs error {err:.3g})")
    if interp:
        return "interpreter (CPU)"
    return f"CUDA {torch.cuda.get_device_name(device)}"
