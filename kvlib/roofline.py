"""Why decoding is memory-bound: FLOPs and bytes of one decode step, against a GPU's roofline.

The roofline model (Williams, Waterman and Patterson, CACM 2009) bounds a kernel's speed by two
ceilings: the GPU's peak arithmetic rate and its memory bandwidth times the kernel's *arithmetic
intensity* (FLOPs per byte moved). The two meet at the *ridge point*, peak / bandwidth: below it a
kernel waits on memory, above it on arithmetic.

One decode step of a batch of ``B`` requests reads every weight once (shared by the batch) and each
request's whole KV cache (shared by nobody). Counting 2 FLOPs per multiply-add:

- weight matmuls: ``2 * params * B`` FLOPs over ``params * b`` bytes, intensity ``2B / b``: batching
  raises it, which is why servers batch;
- attention: ``4 * L * H * d * T * B`` FLOPs (``q.k`` and ``p.v`` for each of ``H`` query heads over
  ``T`` cached tokens) over ``2 * L * H_kv * d * T * B * b`` bytes, intensity ``2 * (H / H_kv) / b``:
  independent of the batch, raised only by sharing KV heads (GQA) or storing fewer bytes (a
  quantized cache).

Activations, the KV write of the new token and softmax FLOPs are left out: they are small next to
the terms above for any real model, and leaving them out keeps the bound a bound.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kvlib.memory import ModelShape, bytes_per_element
from kvlib.validate import describe, require_int


@dataclass(frozen=True)
class GpuSpec:
    """Peak dense bf16 tensor-core FLOP/s (no sparsity) and memory bandwidth in bytes/s, from the
    vendor's datasheet."""

    name: str
    peak_flops: float
    bandwidth: float
    source: str

    @property
    def ridge_point(self) -> float:
        """FLOPs per byte a kernel needs to be limited by arithmetic rather than memory."""
        return self.peak_flops / self.bandwidth

    def attainable_flops(self, intensity: float) -> float:
        """The roofline: min(peak, intensity * bandwidth) FLOP/s at ``intensity`` FLOPs per byte."""
        if not intensity >= 0:  # also refuses NaN
            raise ValueError(f"intensity must be a number of FLOPs per byte >= 0, got {intensity!r}")
        return min(self.peak_flops, intensity * self.bandwidth)


GPU_SPECS: dict[str, GpuSpec] = {
    "H100 SXM": GpuSpec("H100 SXM", 989.4e12, 3.35e12, "NVIDIA H100 Tensor Core GPU datasheet"),
    "H200 SXM": GpuSpec("H200 SXM", 989.4e12, 4.8e12, "NVIDIA H200 Tensor Core GPU datasheet"),
    "A100 80GB SXM": GpuSpec("A100 80GB SXM", 312e12, 2.039e12, "NVIDIA A100 Tensor Core GPU datasheet"),
    "L40S": GpuSpec("L40S", 362.05e12, 0.864e12, "NVIDIA L40S datasheet"),
    "A10": GpuSpec("A10", 125e12, 0.6e12, "NVIDIA A10 Tensor Core GPU datasheet"),
}


def decode_step_costs(
    shape: ModelShape, batch: int, context_len: int, dtype: torch.dtype | str = "bf16"
) -> dict[str, float]:
    """FLOPs and bytes read by one decode step of ``batch`` requests whose caches hold ``context_len``
    tokens each, weights and cache in ``dtype``.

    Returns floats under four keys:
    - ``"matmul_flops"``: ``2 * params * batch`` (2 FLOPs per parameter per token; ``params =
      params_b * 10**9``, embeddings included, the usual approximation);
    - ``"matmul_bytes"``: ``params * bytes_per_element``, the weights read once for the whole batch;
    - ``"attention_flops"``: ``4 * num_layers * num_heads * head_dim * context_len * batch`` (every
      *query* head scores and sums ``context_len`` keys and values);
    - ``"attention_bytes"``: the KV cache read, ``2 * num_layers * num_kv_heads * head_dim *
      context_len * batch * bytes_per_element``.
    """
    if not isinstance(shape, ModelShape):
        raise TypeError(f"shape must be a ModelShape (see kvlib.memory.MODEL_CONFIGS), got {describe(shape)}")
    batch = require_int("batch", batch, minimum=1)
    context_len = require_int("context_len", context_len, minimum=0)
    params = shape.params_b * 1e9
    b = bytes_per_element(dtype)
    heads_x_dim = shape.num_layers * shape.num_heads * shape.head_dim
    kv_x_dim = shape.num_layers * shape.num_kv_heads * shape.head_dim
    return {
        "matmul_flops": 2.0 * params * batch,
        "matmul_bytes": params * b,
        "attention_flops": 4.0 * heads_x_dim * context_len * batch,
        # Not kv_cache_bytes: it rounds a packed int2/int4 cache up to whole bytes; a bound wants the exact
        # count.
        "attention_bytes": 2.0 * kv_x_dim * context_len * batch * b,
    }


def step_time_floor(costs: dict[str, float], gpu: GpuSpec) -> float:
    """Seconds one step takes at best on ``gpu``: the slower of moving all its bytes at full bandwidth and
    doing all its FLOPs at peak (the two overlap at best, hence the max)."""
    flops = costs["matmul_flops"] + costs["attention_flops"]
    moved = costs["matmul_bytes"] + costs["attention_bytes"]
    return max(moved / gpu.bandwidth, flops / gpu.peak_flops)


def intensities(costs: dict[str, float]) -> dict[str, float]:
    """FLOPs per byte of the weight matmuls, of attention, and of the whole step (0 for a part that reads
    nothing: a shape with no parameters, an empty cache)."""

    def ratio(flops: float, moved: float) -> float:
        return flops / moved if moved else 0.0

    return {
        "matmul": ratio(costs["matmul_flops"], costs["matmul_bytes"]),
        "attention": ratio(costs["attention_flops"], costs["attention_bytes"]),
        "step": ratio(
            costs["matmul_flops"] + costs["attention_flops"], costs["matmul_bytes"] + costs["attention_bytes"]
        ),
    }
