"""Back-of-the-envelope sizing of a deployment: the arithmetic an inference interview asks for.

Each function answers one question a capacity plan starts with, from a model's shape
(:class:`kvlib.memory.ModelShape`) and nothing measured:

- :func:`kv_gib`: the KV cache of some requests, in GiB;
- :func:`gpus_needed`: how many GPUs hold the weights and the KV cache of a load;
- :func:`prefix_cached_bytes`: what a shared system prompt costs in a paged cache with prefix caching;
- :func:`quantized_kv_bytes`: KV bytes at 8, 4 or 2 bits with group-wise scales and zero-points;
- :func:`max_requests_per_gpu`: how many requests fit on one GPU of a tensor-parallel group.

Units are explicit everywhere because the classic slips are units: GiB (2**30 bytes, what
``nvidia-smi`` and PyTorch report, and what an "80GB" card holds: 80 GiB) against GB (10**9 bytes),
and billions of parameters (10**9) against GiB of weights. Activations, the CUDA context and
allocator fragmentation are left out; ``utilization`` (vLLM's ``gpu_memory_utilization``, 0.9 by
default) stands for the share of each GPU an engine lets itself use.
"""

from __future__ import annotations

import math
import numbers

import torch

from kvlib.memory import GiB, ModelShape, bytes_per_element, kv_cache_bytes, kv_heads_per_gpu
from kvlib.validate import describe, require_int


def _require_shape(shape: ModelShape) -> ModelShape:
    if not isinstance(shape, ModelShape):
        raise TypeError(f"shape must be a ModelShape (see kvlib.memory.MODEL_CONFIGS), got {describe(shape)}")
    return shape


def _require_positive(name: str, value: float, maximum: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {describe(value)}")
    if not 0 < value <= maximum:
        bound = f"in (0, {maximum:g}]" if math.isfinite(maximum) else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return float(value)


def kv_gib(shape: ModelShape, seq_len: int, batch: int = 1, dtype: torch.dtype | str = "fp16") -> float:
    """GiB (2**30 bytes) of keys and values for ``batch`` requests of ``seq_len`` tokens each.

    ``2 * num_layers * num_kv_heads * head_dim * seq_len * batch * bytes_per_element / 2**30``: the
    width per token and layer is ``num_kv_heads * head_dim`` (the key projection), not the model width,
    as soon as the model uses grouped-query attention.
    """
    _require_shape(shape)
    return shape.kv_bytes(seq_len, batch, dtype) / GiB


def usable_bytes(gpu_gib: float, utilization: float) -> float:
    """Bytes of one GPU an engine lets itself use: ``utilization * gpu_gib * 2**30`` (vLLM's
    ``gpu_memory_utilization``; an "80GB" card holds 80 GiB)."""
    return _require_positive("utilization", utilization, 1.0) * _require_positive("gpu_gib", gpu_gib) * GiB


def weight_bytes(shape: ModelShape, dtype: torch.dtype | str = "bf16") -> float:
    """Bytes of the weights: ``params_b * 10**9`` parameters of ``bytes_per_element(dtype)`` each."""
    _require_shape(shape)
    return shape.params_b * 1e9 * bytes_per_element(dtype)


def gpus_needed(
    shape: ModelShape,
    n_requests: int,
    seq_len: int,
    gpu_gib: float = 80.0,
    utilization: float = 0.9,
    weight_dtype: torch.dtype | str = "bf16",
    kv_dtype: torch.dtype | str = "bf16",
) -> int:
    """The fewest GPUs whose usable memory holds the weights and the KV cache of ``n_requests``
    concurrent requests of ``seq_len`` tokens.

    Usable memory per GPU is ``utilization * gpu_gib * 2**30`` bytes. The weights are counted once
    (every request shares them); the KV cache once per request. Activations and the rule that tensor
    parallelism wants a divisor of the head count are left out: this is the lower bound a plan starts
    from.
    """
    n_requests = require_int("n_requests", n_requests, minimum=0)
    seq_len = require_int("seq_len", seq_len, minimum=0)
    usable = usable_bytes(gpu_gib, utilization)
    total = weight_bytes(shape, weight_dtype) + shape.kv_bytes(seq_len, n_requests, kv_dtype)
    return max(1, math.ceil(total / usable))


def prefix_cached_bytes(
    shape: ModelShape,
    prefix_len: int,
    suffix_len: int,
    n_users: int,
    block_size: int = 16,
    dtype: torch.dtype | str = "fp16",
) -> int:
    """KV bytes a paged cache with prefix caching holds for ``n_users`` requests that start with the same
    ``prefix_len`` tokens (a system prompt) followed by ``suffix_len`` tokens of their own.

    Memory comes in blocks of ``block_size`` tokens. Prefix caching shares only *full* blocks (a block is
    found by the hash of all the tokens up to its end, as in vLLM), so the ``prefix_len // block_size``
    full prefix blocks are stored once, and each request holds its own blocks for the rest: the prefix's
    partial last block and its suffix, ``ceil((prefix_len % block_size + suffix_len) / block_size)``
    blocks. With no users nothing is held.
    """
    _require_shape(shape)
    prefix_len = require_int("prefix_len", prefix_len, minimum=0)
    suffix_len = require_int("suffix_len", suffix_len, minimum=0)
    n_users = require_int("n_users", n_users, minimum=0)
    block_size = require_int("block_size", block_size, minimum=1)
    bytes_per_element(dtype)  # refuses an unknown dtype even when nothing is held
    if n_users == 0:
        return 0
    shared_blocks = prefix_len // block_size
    own_blocks = -(-(prefix_len % block_size + suffix_len) // block_size)
    blocks = shared_blocks + n_users * own_blocks
    return shape.kv_bytes(blocks * block_size, 1, dtype)


QUANT_BITS = (2, 4, 8)


def quantized_kv_bytes(
    shape: ModelShape,
    seq_len: int,
    bits: int,
    group_size: int = 64,
    batch: int = 1,
    scale_dtype: torch.dtype | str = "fp16",
) -> int:
    """KV bytes when every key and value is stored in ``bits`` bits (8, 4 or 2), group-wise.

    Per token, layer, KV head and tensor (K and V): the ``head_dim`` codes packed into
    ``ceil(head_dim * bits / 8)`` bytes, plus, for every group of ``group_size`` consecutive channels, one
    scale and one zero-point of ``scale_dtype`` each. ``group_size`` must divide ``head_dim``. This is
    the layout of per-token group-wise int4 in KIVI's value cache and of most int8/int4 KV kernels;
    the overhead of the scales is why int4 saves less than 4x against fp16.
    """
    _require_shape(shape)
    seq_len = require_int("seq_len", seq_len, minimum=0)
    batch = require_int("batch", batch, minimum=0)
    bits = require_int("bits", bits)
    if bits not in QUANT_BITS:
        raise ValueError(f"bits must be one of {QUANT_BITS}, got {bits}")
    group_size = require_int("group_size", group_size, minimum=1)
    if shape.head_dim % group_size:
        raise ValueError(f"group_size={group_size} must divide head_dim={shape.head_dim}")
    scale_bytes = bytes_per_element(scale_dtype)
    if scale_bytes != int(scale_bytes):
        raise ValueError(f"scale_dtype must be a whole-byte type such as 'fp16', got {scale_dtype!r}")
    codes = -(-shape.head_dim * bits // 8)  # packed, rounded up to whole bytes
    per_vector = codes + 2 * (shape.head_dim // group_size) * int(scale_bytes)
    return 2 * shape.num_layers * shape.num_kv_heads * seq_len * batch * per_vector


def max_requests_per_gpu(
    shape: ModelShape,
    seq_len: int,
    tp: int,
    gpu_gib: float = 80.0,
    utilization: float = 0.9,
    weight_dtype: torch.dtype | str = "bf16",
    kv_dtype: torch.dtype | str = "bf16",
) -> int:
    """How many requests of ``seq_len`` tokens fit when tensor parallelism spreads the model over ``tp``
    GPUs of ``gpu_gib`` GiB each (every GPU runs a slice of every request, so this is also the group's
    batch).

    Each GPU holds ``1/tp`` of the weights and, for every request, the KV cache of
    :func:`kvlib.memory.kv_heads_per_gpu` heads (KV heads split while there are at least ``tp`` of them,
    then one copied head per GPU; ``tp`` must split the heads, else ValueError). What is left of the
    usable ``utilization * gpu_gib * 2**30`` bytes after the weights holds whole requests: the answer
    is rounded down, and is 0 when the weights alone do not fit.
    """
    _require_shape(shape)
    seq_len = require_int("seq_len", seq_len, minimum=1)
    heads = kv_heads_per_gpu(shape, tp)
    usable = usable_bytes(gpu_gib, utilization)
    free = usable - weight_bytes(shape, weight_dtype) / tp
    per_request = kv_cache_bytes(shape.num_layers, heads, shape.head_dim, seq_len, 1, kv_dtype)
    return max(0, math.floor(free / per_request))
