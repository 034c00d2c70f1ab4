"""Inputs shared by chapter 07's checks: paged and contiguous caches whose unused slots hold NaN.

Every slot a correct kernel must not read (past a sequence's length, in a block no sequence owns, in
the null block 0 that unused block-table entries point at) holds NaN, so a missing mask shows up as
NaN in the output even where the softmax weight is 0. Cases live on the device the kernels run on
(CUDA when kvlib.kernels runs compiled, else the CPU for Triton's interpreter).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..common import CheckFailed
from ..fixtures import generator, randn


def device() -> str:
    from kvlib.kernels import MODE

    return "cuda" if MODE == "cuda" else "cpu"


# Set to 1 to grade on the CPU as a GPU grades (no load traces, no memory guard): how the course finds the
# mutants that only a trace catches, which tests/test_checks.py then skips on CUDA (`# NEEDS: interpreter`).
UNTRACED = "KVLIB_CH07_UNTRACED"


def interpreted() -> bool:
    """True when kernels run in Triton's CPU interpreter (where loads can be traced)."""
    import os

    from kvlib.kernels import MODE

    return MODE != "cuda" and os.environ.get(UNTRACED) != "1"


@contextlib.contextmanager
def traced(**tensors: Tensor) -> Iterator[Any]:
    """A load trace (``kvlib.kernels.trace_loads``) of the named tensors when kernels run in the
    interpreter; None where they compile (nothing passes through Python there)."""
    if not interpreted():
        yield None
        return
    from kvlib.kernels.trace import trace_loads

    with trace_loads(**tensors) as trace:
        yield trace


DOT_SIZE_HINT = (
    "tl.dot needs the summed dimension >= 16 on NVIDIA GPUs (Triton refuses smaller ones, and so does the "
    "grader's interpreter): launch with BLOCK_D = max(16, triton.next_power_of_2(head_dim)) (and BLOCK_N >= "
    "16), masking the lanes d >= head_dim"
)


def explain_dot_size(exc: CheckFailed) -> CheckFailed:
    """Add :data:`DOT_SIZE_HINT` to Triton's "K >= 16" refusal of a small ``tl.dot``."""
    if "K >= 16" in str(exc) or "K >= 32" in str(exc):
        return CheckFailed(f"{exc}; {DOT_SIZE_HINT}")
    return exc


@dataclass
class PagedCase:
    """One paged decode problem; ``args`` is what a launcher takes before ``block_n``."""

    q: Tensor
    k_cache: Tensor
    v_cache: Tensor
    block_table: Tensor
    seq_lens: Tensor
    note: str

    @property
    def args(self) -> tuple[Tensor, ...]:
        return (self.q, self.k_cache, self.v_cache, self.block_table, self.seq_lens)

    @property
    def group(self) -> int:
        return self.q.shape[1] // self.k_cache.shape[2]

    def describe(self) -> str:
        b, hq, d = self.q.shape
        return (
            f"batch {b}, seq_lens {self.seq_lens.tolist()}, {hq} query / {self.k_cache.shape[2]} KV heads, "
            f"head_dim {d}, block_size {self.k_cache.shape[1]}, {str(self.q.dtype).removeprefix('torch.')}"
            + (f" ({self.note})" if self.note else "")
        )

    def reference(self) -> Tensor:
        """The float32 attention output ``(batch, num_heads, head_dim)`` (kvlib's gather reference)."""
        from kvlib.kernels import paged_attention_reference

        return paged_attention_reference(
            self.q.float().cpu(), self.k_cache.float().cpu(), self.v_cache.float().cpu(),
            self.block_table.cpu(), self.seq_lens.cpu(),
        )  # fmt: skip


def paged_case(
    lens: tuple[int, ...],
    num_heads: int = 4,
    num_kv_heads: int = 2,
    head_dim: int = 16,
    block_size: int = 8,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    q_scale: float = 1.0,
    spare_blocks: int = 2,
    note: str = "",
) -> PagedCase:
    """Blocks shuffled over a pool with `spare_blocks` unused (NaN) blocks; `q_scale` sharpens the softmax."""
    from kvlib.kernels import build_paged_cache

    gen = generator(seed)
    batch, max_len = len(lens), max(lens)
    k = randn(gen, batch, max_len, num_kv_heads, head_dim)
    v = randn(gen, batch, max_len, num_kv_heads, head_dim)
    q = q_scale * randn(gen, batch, num_heads, head_dim)
    seq_lens = torch.tensor(lens, dtype=torch.int32)
    needed = sum(math.ceil(n / block_size) for n in lens) + 1  # + the null block 0
    k_cache, v_cache, table = build_paged_cache(
        k, v, seq_lens, block_size, num_blocks=needed + spare_blocks, generator=gen
    )
    dev = device()
    return PagedCase(
        q.to(dtype).to(dev), k_cache.to(dtype).to(dev), v_cache.to(dtype).to(dev), table.to(dev),
        seq_lens.to(dev), note,
    )  # fmt: skip


@dataclass
class ContiguousCase:
    """A contiguous cache ``(batch, max_len, num_kv_heads, head_dim)``, NaN past each sequence's length."""

    q: Tensor
    k: Tensor
    v: Tensor
    seq_lens: Tensor
    note: str

    @property
    def args(self) -> tuple[Tensor, ...]:
        return (self.q, self.k, self.v, self.seq_lens)

    def describe(self) -> str:
        b, hq, d = self.q.shape
        return (
            f"batch {b}, max_len {self.k.shape[1]}, seq_lens {self.seq_lens.tolist()}, {hq} query / "
            f"{self.k.shape[2]} KV heads, head_dim {d}, {str(self.q.dtype).removeprefix('torch.')}"
            + (f" ({self.note})" if self.note else "")
        )

    def reference(self) -> Tensor:
        from kvlib.kernels import contiguous_as_paged, paged_attention_reference

        k, v, table = contiguous_as_paged(self.k.float().cpu(), self.v.float().cpu(), self.seq_lens.cpu())
        return paged_attention_reference(self.q.float().cpu(), k, v, table, self.seq_lens.cpu())


def contiguous_case(
    lens: tuple[int, ...],
    max_len: int | None = None,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    head_dim: int = 16,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    q_scale: float = 1.0,
    note: str = "",
) -> ContiguousCase:
    gen = generator(seed)
    batch = len(lens)
    max_len = max(lens) if max_len is None else max_len
    k = randn(gen, batch, max_len, num_kv_heads, head_dim)
    v = randn(gen, batch, max_len, num_kv_heads, head_dim)
    q = q_scale * randn(gen, batch, num_heads, head_dim)
    for b, n in enumerate(lens):
        k[b, n:] = float("nan")
        v[b, n:] = float("nan")
    dev = device()
    seq_lens = torch.tensor(lens, dtype=torch.int32, device=dev)
    return ContiguousCase(q.to(dtype).to(dev), k.to(dtype).to(dev), v.to(dtype).to(dev), seq_lens, note)
