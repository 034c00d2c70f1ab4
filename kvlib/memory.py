"""How much memory a KV cache takes: the formula, real model shapes, and measurements.

Every decoder layer stores one key and one value vector per KV head for every token it has
seen. With L layers, H_kv KV heads of width d, a batch of B sequences of T tokens and b bytes
per element, the cache holds

    bytes = 2 * L * H_kv * d * T * B * b

The leading 2 is keys plus values. `H_kv * d` is the width of the *key projection*, which equals
the model width only for multi-head attention: grouped-query models (Llama-2-70B, Llama-3,
Mistral) keep fewer KV heads than query heads, and some models (Gemma-7B) have
`heads * head_dim != hidden_size`. Memory grows linearly in T and B; it is the attention
*compute* of generation without a cache that grows quadratically.

This module holds the formula (`kv_cache_bytes`), the one table of real model shapes used by
the chapters (`MODEL_CONFIGS`), and measurements: `cache_nbytes` counts the bytes a cache
object really holds, `measure_allocations` counts tensor allocations and peak live bytes of a
piece of code (torch profiler on CPU, allocator statistics on CUDA).
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import sys
import types
from collections import deque
from collections.abc import Callable, Iterator, KeysView, ValuesView
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import torch

from kvlib.quant import (
    check_bits,
    check_key_granularity,
    check_scheme,
    check_storage_dtype,
    value_group_size,
)
from kvlib.validate import describe, require_device, require_int

GiB = 1024**3
MiB = 1024**2

# Bytes per element for the dtype names the course uses. int4/int2 are packed formats
# (chapter 04); they have no torch dtype, hence the fractions.
_BYTES_BY_NAME: dict[str, Fraction] = {
    "fp32": Fraction(4),
    "float32": Fraction(4),
    "float": Fraction(4),
    "fp16": Fraction(2),
    "float16": Fraction(2),
    "half": Fraction(2),
    "bf16": Fraction(2),
    "bfloat16": Fraction(2),
    "fp8": Fraction(1),
    "float8": Fraction(1),
    "float8_e4m3fn": Fraction(1),
    "float8_e5m2": Fraction(1),
    "int8": Fraction(1),
    "uint8": Fraction(1),
    "int4": Fraction(1, 2),
    "int2": Fraction(1, 4),
    "fp64": Fraction(8),
    "float64": Fraction(8),
    "double": Fraction(8),
}


def _bytes_fraction(dtype: torch.dtype | str) -> Fraction:
    if isinstance(dtype, torch.dtype):
        return Fraction(torch.empty((), dtype=dtype).element_size())
    if isinstance(dtype, str):
        key = dtype.strip().lower().removeprefix("torch.")
        if key in _BYTES_BY_NAME:
            return _BYTES_BY_NAME[key]
        known = ", ".join(sorted(_BYTES_BY_NAME))
        raise ValueError(f"unknown dtype name {dtype!r}; expected a torch.dtype or one of: {known}")
    raise TypeError(f"dtype must be a torch.dtype or a string such as 'fp16', got {describe(dtype)}")


def bytes_per_element(dtype: torch.dtype | str) -> float:
    """Bytes one element of `dtype` occupies: 4 for fp32, 2 for fp16/bf16, 1 for int8, 0.5 for int4."""
    return float(_bytes_fraction(dtype))


def kv_cache_bytes(
    num_layers: int,
    num_kv_heads: int,
    head_dim: int,
    seq_len: int,
    batch: int = 1,
    dtype: torch.dtype | str = torch.float16,
) -> int:
    """Bytes of keys and values for `batch` sequences of `seq_len` tokens.

    bytes = 2 (K and V) * num_layers * num_kv_heads * head_dim * seq_len * batch * bytes_per_element.
    Packed sub-byte formats (int4, int2) are rounded up to whole bytes.
    """
    sizes = [
        require_int("num_layers", num_layers, minimum=0),
        require_int("num_kv_heads", num_kv_heads, minimum=0),
        require_int("head_dim", head_dim, minimum=0),
        require_int("seq_len", seq_len, minimum=0),
        require_int("batch", batch, minimum=0),
    ]
    elements = 2 * math.prod(sizes)
    total = elements * _bytes_fraction(dtype)
    return int(-(-total.numerator // total.denominator))  # ceil without float rounding


def quantized_kv_cache_bytes(
    num_layers: int,
    num_kv_heads: int,
    head_dim: int,
    seq_len: int,
    batch: int = 1,
    bits: int = 4,
    group_size: int = 32,
    residual: int = 128,
    sinks: int = 0,
    dtype: torch.dtype | str = torch.float16,
    scheme: str = "kivi",
    key_granularity: str = "per_channel",
) -> int:
    """Bytes of a :class:`kvlib.cache.quantized.QuantizedKVCache` holding ``seq_len`` tokens, from shapes.

    Per layer and batch row and KV head (``D = head_dim``, ``G = group_size``, ``b`` bytes per ``dtype``
    element, ``s = min(sinks, seq_len)``), ``q`` tokens are quantized: ``q = g * G`` with
    ``g = max(0, (seq_len - s - residual) // G)`` groups for per-channel keys (KIVI), ``q = max(0,
    seq_len - s - residual)`` for per-token keys. With ``Gv = G`` if it divides D, else D:

    - full precision: ``(seq_len - q) * D * b`` for keys, the same for values (sinks + residual);
    - quantized keys, per channel: ``q * ceil(D * bits / 8)`` code bytes and ``g * D`` scales;
      per token: ``q * ceil(D * bits / 8)`` code bytes and ``q * D / Gv`` scales;
    - quantized values (per token): ``q * ceil(D * bits / 8)`` code bytes and ``q * D / Gv`` scales;
    - beside every scale a min of ``b`` bytes (``"kivi"``), a uint8 zero-point (``"asymmetric"``) or
      nothing (``"symmetric"``).
    """
    num_layers = require_int("num_layers", num_layers, minimum=0)
    num_kv_heads = require_int("num_kv_heads", num_kv_heads, minimum=0)
    head_dim = require_int("head_dim", head_dim, minimum=1)
    seq_len = require_int("seq_len", seq_len, minimum=0)
    batch = require_int("batch", batch, minimum=0)
    bits = check_bits(bits)
    group_size = require_int("group_size", group_size, minimum=1)
    residual = require_int("residual", residual, minimum=0)
    sinks = require_int("sinks", sinks, minimum=0)
    element = _bytes_fraction(dtype)
    if element.denominator != 1:
        raise ValueError(f"dtype must be a whole-byte floating type (the cache's dtype), got {dtype!r}")
    b = int(element)
    extra = {"kivi": b, "asymmetric": 1, "symmetric": 0}[check_scheme(scheme)]  # stored beside each scale
    per_channel = check_key_granularity(key_granularity) == "per_channel"
    past_window = max(0, seq_len - min(sinks, seq_len) - residual)
    quantized = past_window // group_size * group_size if per_channel else past_window
    value_group = value_group_size(group_size, head_dim)
    row_bytes = -(-head_dim * bits // 8)  # packed codes of one token's D channels
    token_scales = quantized * (head_dim // value_group)  # per-token scales of q tokens
    full = 2 * (seq_len - quantized) * head_dim * b
    key_scales = quantized // group_size * head_dim if per_channel else token_scales
    key_q = quantized * row_bytes + key_scales * (b + extra)
    value_q = quantized * row_bytes + token_scales * (b + extra)
    return num_layers * batch * num_kv_heads * (full + key_q + value_q)


def float_kv_cache_bytes(
    num_layers: int,
    num_kv_heads: int,
    head_dim: int,
    seq_len: int,
    batch: int = 1,
    storage_dtype: torch.dtype = torch.bfloat16,
) -> int:
    """Bytes of a :class:`kvlib.cache.quantized.FloatKVCache` holding ``seq_len`` tokens, from shapes.

    :func:`kv_cache_bytes` in ``storage_dtype`` (bf16, fp16: 2 bytes per element; fp8 e4m3: 1), plus,
    for fp8, one float32 ``k_scale`` and one ``v_scale`` per layer (8 bytes a layer) once the cache holds
    any element.
    """
    storage_dtype = check_storage_dtype(storage_dtype)
    elements = kv_cache_bytes(num_layers, num_kv_heads, head_dim, seq_len, batch, storage_dtype)
    scales = 2 * num_layers * 4 if storage_dtype == torch.float8_e4m3fn and elements else 0
    return elements + scales


@dataclass(frozen=True)
class ModelShape:
    """The attention shape of a published model: what the KV-cache formula needs, plus context."""

    name: str
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    hidden_size: int
    max_seq_len: int
    params_b: float  # parameters, billions (for context only)
    source: str  # where the numbers come from

    def __post_init__(self) -> None:
        # A typo in a hand-made shape (0 KV heads, a float layer count) would otherwise surface as a
        # ZeroDivisionError in kv_saving_factor or a wrong byte count much later.
        for name in ("num_layers", "num_heads", "num_kv_heads", "head_dim", "hidden_size", "max_seq_len"):
            require_int(f"ModelShape.{name}", getattr(self, name), minimum=1)

    @property
    def kv_width(self) -> int:
        """Width of one token's keys in one layer: num_kv_heads * head_dim (not hidden_size under GQA)."""
        return self.num_kv_heads * self.head_dim

    def kv_bytes(self, seq_len: int, batch: int = 1, dtype: torch.dtype | str = torch.float16) -> int:
        """KV-cache bytes for this model (see `kv_cache_bytes`)."""
        return kv_cache_bytes(self.num_layers, self.num_kv_heads, self.head_dim, seq_len, batch, dtype)

    def kv_bytes_per_token(self, dtype: torch.dtype | str = torch.float16) -> int:
        """Bytes one token adds to the cache (all layers, keys and values)."""
        return self.kv_bytes(1, 1, dtype)


# The ONE table of real configurations, reused by chapters 02, 03 and 09. Numbers are from each
# model's paper and its published Hugging Face `config.json` (num_hidden_layers,
# num_attention_heads, num_key_value_heads, hidden_size, max_position_embeddings).
MODEL_CONFIGS: dict[str, ModelShape] = {
    # Radford et al. 2019, "Language Models are Unsupervised Multitask Learners" (GPT-2 small).
    "GPT-2 124M": ModelShape(
        "GPT-2 124M", 12, 12, 12, 64, 768, 1024, 0.124, "GPT-2 paper; openai-community/gpt2"
    ),
    # Same paper, largest model (1.5B): 48 layers, d_model 1600, 25 heads of 64.
    "GPT-2 XL 1.5B": ModelShape("GPT-2 XL 1.5B", 48, 25, 25, 64, 1600, 1024, 1.5, "GPT-2 paper; gpt2-xl"),
    # Touvron et al. 2023, "Llama 2: Open Foundation and Fine-Tuned Chat Models", Table 1; GQA only in 70B.
    "Llama-2-7B": ModelShape(
        "Llama-2-7B", 32, 32, 32, 128, 4096, 4096, 6.7, "Llama 2 paper; meta-llama/Llama-2-7b-hf"
    ),
    "Llama-2-13B": ModelShape(
        "Llama-2-13B", 40, 40, 40, 128, 5120, 4096, 13.0, "Llama 2 paper; meta-llama/Llama-2-13b-hf"
    ),
    "Llama-2-70B": ModelShape(
        "Llama-2-70B",
        80,
        64,
        8,
        128,
        8192,
        4096,
        69.0,
        "Llama 2 paper (GQA, 8 KV heads); meta-llama/Llama-2-70b-hf",
    ),
    # Llama Team 2024, "The Llama 3 Herd of Models", Table 3: all sizes use 8 KV heads.
    "Llama-3-8B": ModelShape(
        "Llama-3-8B", 32, 32, 8, 128, 4096, 8192, 8.0, "Llama 3 paper; meta-llama/Meta-Llama-3-8B"
    ),
    "Llama-3-70B": ModelShape(
        "Llama-3-70B", 80, 64, 8, 128, 8192, 8192, 70.6, "Llama 3 paper; meta-llama/Meta-Llama-3-70B"
    ),
    "Llama-3.1-405B": ModelShape(
        "Llama-3.1-405B", 126, 128, 8, 128, 16384, 131072, 405.0, "Llama 3 paper; meta-llama/Llama-3.1-405B"
    ),
    # Jiang et al. 2023, "Mistral 7B", Table 1 (8 KV heads; sliding window 4096 ignored here).
    "Mistral-7B": ModelShape(
        "Mistral-7B", 32, 32, 8, 128, 4096, 8192, 7.2, "Mistral 7B paper; mistralai/Mistral-7B-v0.1"
    ),
    # Jiang et al. 2024, "Mixtral of Experts": same attention as Mistral-7B.
    "Mixtral-8x7B": ModelShape(
        "Mixtral-8x7B", 32, 32, 8, 128, 4096, 32768, 46.7, "Mixtral paper; mistralai/Mixtral-8x7B-v0.1"
    ),
    # Gemma Team 2024, "Gemma: Open Models Based on Gemini Research", Table 1: 16 heads of 256 > d_model 3072.
    "Gemma-7B": ModelShape("Gemma-7B", 28, 16, 16, 256, 3072, 8192, 8.5, "Gemma paper; google/gemma-7b"),
    # Yang et al. 2024, "Qwen2 Technical Report", Table 1: 28 query heads, 4 KV heads.
    "Qwen2-7B": ModelShape("Qwen2-7B", 28, 28, 4, 128, 3584, 32768, 7.6, "Qwen2 report; Qwen/Qwen2-7B"),
}


def model_shape(name: str) -> ModelShape:
    """Look up a model in `MODEL_CONFIGS`, with a helpful error listing the known names."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a model name (str) such as 'Llama-2-7B', got {describe(name)}")
    try:
        return MODEL_CONFIGS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(MODEL_CONFIGS)}") from None


def kv_heads_per_gpu(shape: ModelShape, tp: int) -> int:
    """KV heads each GPU holds when tensor parallelism splits ``shape``'s attention over ``tp`` GPUs.

    Query heads are split evenly, so ``tp`` must divide ``num_heads``. KV heads are split too while
    there are at least ``tp`` of them (``tp`` must divide them); with fewer KV heads than GPUs each GPU
    keeps a copy of the one KV head its query heads read (``tp`` must be a multiple of ``num_kv_heads``),
    so the KV cache stops shrinking per GPU past ``tp = num_kv_heads``. vLLM enforces the same rules.
    """
    if not isinstance(shape, ModelShape):
        raise TypeError(f"shape must be a ModelShape (see MODEL_CONFIGS), got {describe(shape)}")
    tp = require_int("tp", tp, minimum=1)
    if shape.num_heads % tp:
        raise ValueError(f"{shape.name}: tp={tp} does not divide its {shape.num_heads} query heads")
    kv = shape.num_kv_heads
    if kv >= tp and kv % tp:
        raise ValueError(f"{shape.name}: tp={tp} does not divide its {kv} KV heads")
    if kv < tp and tp % kv:
        raise ValueError(
            f"{shape.name}: tp={tp} is not a multiple of its {kv} KV heads, so they cannot be copied evenly"
        )
    return max(1, kv // tp)


def kv_bytes_per_gpu(
    shape: ModelShape, tp: int, seq_len: int, batch: int = 1, dtype: torch.dtype | str = torch.float16
) -> int:
    """KV-cache bytes on each of ``tp`` GPUs for ``batch`` sequences of ``seq_len`` tokens: every layer,
    :func:`kv_heads_per_gpu` heads (see :func:`kv_cache_bytes` for the formula)."""
    heads = kv_heads_per_gpu(shape, tp)
    return kv_cache_bytes(shape.num_layers, heads, shape.head_dim, seq_len, batch, dtype)


def format_bytes(n: float) -> str:
    """Human-readable binary size: 2147483648 -> '2.00 GiB'; negative sizes (a memory delta) keep the sign.

    NaN or infinity is never a size (it comes from a failed measurement or a division by zero), so it
    raises ValueError instead of printing 'nan B' or 'inf TiB'; a non-number raises TypeError.
    """
    if isinstance(n, torch.Tensor) and n.numel() == 1 and not n.dtype.is_complex:
        n = n.item()
    if isinstance(n, bool) or not isinstance(n, numbers.Real):
        raise TypeError(f"format_bytes: n must be a number of bytes, got {describe(n)}")
    if not math.isfinite(n):
        raise ValueError(f"format_bytes: n must be a finite number of bytes, got {n}")
    for unit, size in (("TiB", 1024**4), ("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


# --------------------------------------------------------------------------------------------
# Measuring what a cache really holds
# --------------------------------------------------------------------------------------------


# How many containers and attributes deep `iter_tensors` follows. Real caches are shallow: a kvlib
# cache keeps its tensors 2 levels down (cache.keys[i]), a transformers 5 DynamicCache 3
# (cache.layers[i].keys), an EncoderDecoderCache 4; 16 leaves a wide margin and still stops a
# runaway walk through an object graph that merely points at a cache.
MAX_DEPTH = 16

# Values that hold no tensor of the cache: scalars, names, and code (a module's or function's
# namespace is not cache memory, and walking it would reach half the interpreter).
_LEAVES = (
    str, bytes, int, float, bool, complex, type(None), torch.dtype, torch.device, type,
    types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
)  # fmt: skip

_Path = tuple  # (parent path, step) pairs, rendered only when an error needs them


def _render(path: _Path | None) -> str:
    steps: list[str] = []
    while path:
        path, step = path
        steps.append(step)
    steps.reverse()
    if len(steps) > 8:
        steps = steps[:4] + ["..."] + steps[-3:]
    return "cache" + "".join(steps)


def _children(obj: Any) -> Iterator[tuple[str, Any]]:
    """(path step, value) for what `obj` holds: dict values, sequence items or attributes."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield f"[{key!r}]", value
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield f"[{i}]", value
    elif isinstance(obj, (set, frozenset, deque, KeysView, ValuesView)):
        for value in obj:  # re-iterable views and collections, unlike a generator
            yield "{...}", value
    elif isinstance(obj, torch.nn.Module):
        yield from _module_children(obj)
    else:
        attrs = dict(getattr(obj, "__dict__", {}))
        for slot in getattr(type(obj), "__slots__", ()):
            if hasattr(obj, slot):
                attrs[slot] = getattr(obj, slot)
        for name, value in attrs.items():
            yield f".{name}", value


# What every nn.Module keeps in its __dict__ (hooks, flags, the parameter/buffer/submodule tables).
_MODULE_INTERNALS = frozenset(vars(torch.nn.Module()))


def _module_children(module: torch.nn.Module) -> Iterator[tuple[str, Any]]:
    """A cache written as an nn.Module: its own buffers and plain attributes, not its parameters
    (weights are not cache memory) and not its submodules (a cache may hold its model)."""
    for name, buffer in module._buffers.items():
        if buffer is not None:
            yield f".{name}", buffer
    for name, value in vars(module).items():
        if name not in _MODULE_INTERNALS:
            yield f".{name}", value


def iter_tensors(
    obj: Any, _seen: set[int] | None = None, _depth: int = 0, _path: _Path | None = None
) -> Iterator[torch.Tensor]:
    """Yield every tensor reachable from `obj` through lists, tuples, dicts and object attributes.

    An `nn.Module` passed in (a cache written as a module) contributes its buffers and the tensors
    in its attributes; its parameters and submodules are skipped, and so is any module found deeper
    down, because a cache may reference its model and model weights are not cache memory.
    Each object is visited once (shared and cyclic references are fine). A structure nesting
    containers more than `MAX_DEPTH` levels deep raises ValueError naming where it stopped, rather
    than silently leaving the deeper tensors out of the count.
    """
    seen = set() if _seen is None else _seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        yield obj
        return
    if isinstance(obj, _LEAVES) or (_depth > 0 and isinstance(obj, torch.nn.Module)):
        return  # a cache may point at its model; model weights are not cache memory
    if _depth >= MAX_DEPTH:
        raise ValueError(
            f"cache nests deeper than MAX_DEPTH={MAX_DEPTH} levels at {_render(_path)} "
            f"({type(obj).__name__}); real caches keep their tensors a few levels down (a DynamicCache "
            "3: cache.layers[i].keys), so pass the cache itself rather than an object graph holding it"
        )
    for step, value in _children(obj):
        yield from iter_tensors(value, seen, _depth + 1, (_path, step))


def _check_cache_arg(cache: Any) -> None:
    """What cache_nbytes cannot count: walking these would return 0 bytes without a word."""
    expected = "a cache object, a container of tensors or a tensor"
    if cache is not None and isinstance(cache, (*_LEAVES, numbers.Number)):  # np.int64 too
        raise TypeError(f"cache must be {expected}, got {describe(cache)}")
    if type(cache).__module__ == "numpy":
        raise TypeError(
            f"cache must be {expected}, got {describe(cache)}: NumPy memory is not torch memory; "
            "pass the tensors (torch.from_numpy shares the buffer)"
        )
    if isinstance(cache, Iterator):
        raise TypeError(
            f"cache must be {expected}, got {describe(cache)}: an iterator would be consumed by the "
            "count; pass a list of the tensors"
        )


def cache_nbytes(cache: Any) -> int:
    """Bytes of tensor storage a cache object holds, each storage counted once.

    Works on any container of tensors: kvlib caches, a transformers `DynamicCache` (its
    `layers[i].keys/.values`), lists of (k, v) pairs; `None` (no cache yet) holds 0 bytes. Views
    that share a storage (a static cache returns slices of one preallocated buffer) count the
    underlying buffer once, because that buffer is what occupies memory. Raises ValueError (naming
    the path) on a structure nested more than `MAX_DEPTH` levels deep instead of undercounting it,
    and TypeError for a number or string, which holds no cache at all.

    Tensors on the meta device count the bytes they would take: a cache built there is sized without
    allocating it. A cache that is itself an `nn.Module` counts its buffers and the tensors in its
    attributes, not its parameters or submodules (see `iter_tensors`). A NumPy array (not torch
    memory) and a generator or other one-shot iterator (counting would consume it) are TypeErrors;
    pass tensors, in a list if there are several.
    """
    _check_cache_arg(cache)
    storages: dict[tuple[str, int], int] = {}
    for tensor in iter_tensors(cache):
        storages[_storage_key(tensor)] = tensor.untyped_storage().nbytes()
    return sum(storages.values())


def _storage_key(tensor: torch.Tensor) -> tuple[str, int]:
    """One key per block of memory: its device and address. A storage with no address (on the meta
    device, or empty) is keyed by the storage object torch shares between views, so that two meta
    tensors, both at address 0, are not taken for one."""
    storage = tensor.untyped_storage()
    address = storage.data_ptr()
    return (str(tensor.device), address) if address else ("no address", storage._cdata)


@dataclass
class AllocationStats:
    """What a piece of code allocated: number of allocations, total bytes, and peak live bytes above start."""

    num_allocs: int
    allocated_bytes: int
    peak_bytes: int
    device: str

    def __str__(self) -> str:
        return (
            f"{self.num_allocs} allocations, {format_bytes(self.allocated_bytes)} allocated, "
            f"peak {format_bytes(self.peak_bytes)} above start ({self.device})"
        )


def measure_allocations(
    fn: Callable[[], Any], device: str | torch.device = "cpu"
) -> tuple[Any, AllocationStats]:
    """Run `fn()` and count the tensor memory it allocates; returns (fn's result, stats).

    On CPU this uses the torch profiler with `profile_memory=True`: every op that allocates
    reports its bytes and every free appears as a `[memory]` event, so replaying the events in
    order gives the live-byte curve and its peak. On CUDA it reads the caching allocator's
    statistics (`allocation.all.allocated`, `allocated_bytes.all.allocated`) and
    `torch.cuda.max_memory_allocated` relative to `torch.cuda.memory_allocated` at the start.
    """
    device = _require_measurable("measure_allocations", fn, device, ("cpu", "cuda"))
    if device.type == "cuda":
        return _measure_cuda(fn, device)
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    live = peak = count = total = 0
    for event in prof.events():  # in order: ops with their own net bytes, '[memory]' for the rest (frees)
        delta = int(event.self_cpu_memory_usage)
        if delta > 0:
            count += 1
            total += delta
        live += delta
        peak = max(peak, live)
    return result, AllocationStats(count, total, peak, "cpu")


def _require_measurable(
    what: str, fn: Any, device: Any, allowed: tuple[str, ...], need_cuda: bool = True
) -> torch.device:
    """Check `fn` is callable and `device` names an allowed (and, with `need_cuda`, available) device;
    cuda_memory_delta passes need_cuda=False: it answers None without CUDA rather than refusing."""
    if not callable(fn):
        raise TypeError(f"{what}: fn must be a callable taking no arguments, got {describe(fn)}")
    return require_device(f"{what}: device", device, allowed=allowed, available=need_cuda)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence the profiler backend's start/stop lines, which it writes straight to file descriptor 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _measure_cuda(fn: Callable[[], Any], device: torch.device) -> tuple[Any, AllocationStats]:
    torch.cuda.synchronize(device)
    start = torch.cuda.memory_allocated(device)
    stats0 = torch.cuda.memory_stats(device)
    torch.cuda.reset_peak_memory_stats(device)
    result = fn()
    torch.cuda.synchronize(device)
    stats1 = torch.cuda.memory_stats(device)
    count = stats1.get("allocation.all.allocated", 0) - stats0.get("allocation.all.allocated", 0)
    total = stats1.get("allocated_bytes.all.allocated", 0) - stats0.get("allocated_bytes.all.allocated", 0)
    peak = torch.cuda.max_memory_allocated(device) - start
    return result, AllocationStats(int(count), int(total), int(peak), str(device))


def cuda_memory_delta(fn: Callable[[], Any], device: str | torch.device = "cuda") -> dict[str, int] | None:
    """`torch.cuda.memory_allocated` and `max_memory_allocated` deltas of `fn()`; None without CUDA.

    Returns {"allocated": bytes still held after fn, "peak": max bytes above the start during fn}.
    """
    device = _require_measurable("cuda_memory_delta", fn, device, ("cuda",), need_cuda=False)
    if not torch.cuda.is_available():
        return None
    torch.cuda.synchronize(device)
    start = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    result = fn()
    torch.cuda.synchronize(device)
    out = {
        "allocated": torch.cuda.memory_allocated(device) - start,
        "peak": torch.cuda.max_memory_allocated(device) - start,
    }
    del result
    return out
