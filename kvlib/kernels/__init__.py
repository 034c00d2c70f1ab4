"""Paged attention (chapter 07): a PyTorch gather reference and a Triton decode kernel.

Triton compiles kernels for CUDA; without CUDA it can run them in its CPU interpreter, but only if
``TRITON_INTERPRET=1`` is in the environment when the ``@triton.jit`` decorators run. So this
package sets it *before* importing the module that defines the kernels, when CUDA is absent and
the user has not chosen explicitly (an existing ``TRITON_INTERPRET`` value is respected). Import
kernels through ``kvlib.kernels``, not by defining ``@triton.jit`` functions before this import.

``MODE`` says which path is active: ``"cuda"`` or ``"interpreter"``.
"""

from __future__ import annotations

import os

import torch

if "TRITON_INTERPRET" not in os.environ and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

from kvlib.kernels.paged_attention import (  # noqa: E402  (must follow the environment choice)
    choose_num_splits,
    contiguous_decode_attention,
    interpreter_active,
    merge_splits,
    paged_attention_decode,
    paged_attention_partials,
)
from kvlib.kernels.reference import (  # noqa: E402
    build_paged_cache,
    contiguous_as_paged,
    copy_blocks,
    gather_kv,
    paged_attention_reference,
    validate_paged_inputs,
    write_kv,
)
from kvlib.kernels.softmax import softmax_rows  # noqa: E402
from kvlib.kernels.trace import trace_loads  # noqa: E402

MODE = "interpreter" if interpreter_active() else "cuda"


def _refuse_dots_a_gpu_refuses() -> None:
    """Make the interpreter apply NVIDIA's lower bound on ``tl.dot`` shapes (the summed dimension K >= 16,
    32 for 8-bit inputs; Triton's NVIDIA backend, ``min_dot_size``). The interpreter accepts any size, so a
    kernel with ``BLOCK_D = 8`` passed every CPU test and then failed to compile on a GPU; now it fails here
    with Triton's own message ("Input shapes should have M >= 1, N >= 1 and K >= 16")."""
    from triton.runtime import interpreter

    def min_dot_size(lhs_type, rhs_type) -> tuple[int, int, int]:  # noqa: ANN001  (Triton's types)
        return (1, 1, 32 if lhs_type.scalar.primitive_bitwidth == 8 else 16)

    interpreter.interpreter_builder.codegen_fns["min_dot_size"] = min_dot_size


if MODE == "interpreter":
    _refuse_dots_a_gpu_refuses()

__all__ = [
    "MODE",
    "build_paged_cache",
    "choose_num_splits",
    "contiguous_decode_attention",
    "contiguous_as_paged",
    "copy_blocks",
    "gather_kv",
    "interpreter_active",
    "merge_splits",
    "paged_attention_decode",
    "paged_attention_partials",
    "paged_attention_reference",
    "softmax_rows",
    "trace_loads",
    "validate_paged_inputs",
    "write_kv",
]
