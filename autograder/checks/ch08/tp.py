"""Exercise `kv_bytes_per_gpu`: the KV cache each GPU holds when tensor parallelism splits attention.

Checked by value against `kv_cache_bytes` with the heads rule of the docstring, over every shape of
`MODEL_CONFIGS` and hand-made ones whose KV heads do not split evenly, tp from 1 past the number of KV
heads, every dtype spelling, batch > 1 and long sequences. Wrong answers are diagnosed first: KV heads
floored to 0 past tp = num_kv_heads (no copy), the whole cache divided by tp, the query heads counted,
the batch, the dtype, a packed int4 or the factor 2 forgotten. Every split the docstring rules out
(tp not dividing the query heads, nor the KV heads, nor a multiple of them, tp < 1) must raise ValueError.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import torch

from kvlib.memory import MODEL_CONFIGS, ModelShape, bytes_per_element, kv_cache_bytes

from ..common import CheckFailed, as_int, as_number, expect_value_error
from ..delegation import graded

REFERENCES = ("kvlib.memory.kv_bytes_per_gpu", "kvlib.memory.kv_heads_per_gpu")

NAME = "kv_bytes_per_gpu"

# tp values past 16 that split some model of MODEL_CONFIGS (25 heads, 28, 40, 64, 128) or none of them.
LARGE_TPS = (20, 24, 25, 28, 32, 40, 48, 64, 96, 128, 256)

DTYPES = (
    torch.float16,
    "fp16",
    "float16",
    torch.bfloat16,
    "bf16",
    torch.float32,
    "fp32",
    "int8",
    torch.int8,
    "int4",
    "fp8",
    torch.float64,
)


def _hand_made(num_heads: int, num_kv_heads: int, num_layers: int = 4, head_dim: int = 64) -> ModelShape:
    return ModelShape(
        f"a hand-made shape with {num_heads} query heads and {num_kv_heads} KV heads",
        num_layers,
        num_heads,
        num_kv_heads,
        head_dim,
        num_heads * head_dim,
        4096,
        0.1,
        "grader",
    )


def _split(shape: ModelShape, tp: int) -> tuple[int | None, str]:
    """(KV heads per GPU, why) for a valid split; (None, why it is invalid) otherwise."""
    h, kv = shape.num_heads, shape.num_kv_heads
    if tp < 1:
        return None, f"tp={tp} is not a number of GPUs (tp < 1)"
    if h % tp:
        return None, f"tp={tp} does not divide the {h} query heads, so they cannot be split evenly"
    if tp <= kv:
        if kv % tp:
            return None, f"tp={tp} does not divide the {kv} KV heads, so they cannot be split evenly"
        return kv // tp, f"tp={tp} divides the {kv} KV heads: {kv // tp} per GPU"
    if tp % kv:
        return None, (
            f"tp={tp} is more than the {kv} KV heads but not a multiple of them, so they cannot be copied "
            "to the same number of GPUs"
        )
    return 1, (
        f"tp={tp} is a multiple of the {kv} KV heads: each GPU keeps a copy of the one KV head its query "
        "heads read"
    )


def _label(shape: ModelShape, tp: Any, seq_len: int, batch: int, dtype: Any) -> str:
    model = (
        shape.name
        if shape.name.startswith("a hand-made")
        else f"{shape.name} ({shape.num_heads} query heads, {shape.num_kv_heads} KV heads)"
    )
    return f"{NAME}({model}, tp={tp}, seq_len={seq_len}, batch={batch}, dtype={dtype!r})"


def _bytes(
    shape: ModelShape, heads: int, seq_len: int, batch: int, dtype: Any, layers: int | None = None
) -> int:
    return kv_cache_bytes(
        shape.num_layers if layers is None else layers, heads, shape.head_dim, seq_len, batch, dtype
    )


def _variants(
    shape: ModelShape, tp: int, heads: int, seq_len: int, batch: int, dtype: Any
) -> dict[str, float]:
    """Classic wrong answers for a valid split, each with the message that names it, most specific first
    (the dtype's own mistakes, then the heads, then the formula)."""
    kv, h = shape.num_kv_heads, shape.num_heads
    total = _bytes(shape, kv, seq_len, batch, dtype)
    want = _bytes(shape, heads, seq_len, batch, dtype)
    bpe = bytes_per_element(dtype)
    out: dict[str, float] = {}
    if bpe < 1:  # a packed format: its elements-not-bytes answer is the same number
        out[f"a packed {dtype!r} counted as a whole byte per element: it holds {bpe:g} bytes per element"] = (
            _bytes(shape, heads, seq_len, batch, torch.int8)
        )
    out[f"the dtype is ignored (fp16 bytes used): {dtype!r} has {bpe:g} bytes per element"] = _bytes(
        shape, heads, seq_len, batch, torch.float16
    )
    out[
        f"0 bytes: with tp={tp} > {kv} KV heads, num_kv_heads // tp floors to 0, but each GPU keeps a copy "
        "of one KV head (the one its query heads read), so the cache per GPU stops shrinking past "
        "tp = num_kv_heads"
    ] = _bytes(shape, kv // tp, seq_len, batch, dtype)
    out[
        "the whole cache divided by tp: KV heads are split only while tp <= num_kv_heads; past it each "
        "GPU keeps a copy of one KV head, so the cache per GPU stops shrinking"
    ] = total / tp
    out[
        f"the query heads counted: the cache holds num_kv_heads ({kv}) KV heads, not num_heads ({h}); each "
        "GPU keeps the KV heads its query heads read"
    ] = _bytes(shape, h // tp, seq_len, batch, dtype)
    out[
        f"the whole model's KV heads ({kv}) on every GPU: tensor parallelism splits them over the tp GPUs"
    ] = total
    out[f"the batch is ignored: {batch} sequences each hold their own cache"] = _bytes(
        shape, heads, seq_len, 1, dtype
    )
    out["keys only: the factor 2 is for keys AND values"] = want / 2
    if bpe >= 1:
        out["elements, not bytes: multiply by the bytes per element of dtype"] = want / bpe
    out["keys and values counted twice: the factor 2 appears once"] = want * 2
    out[f"one layer only: every one of the {shape.num_layers} layers has its own cache"] = _bytes(
        shape, heads, seq_len, batch, dtype, layers=1
    )
    out[f"seq_len is ignored: the cache holds {seq_len} tokens per sequence"] = _bytes(
        shape, heads, 1, batch, dtype
    )
    return {msg: value for msg, value in out.items() if not math.isclose(value, want, rel_tol=1e-12)}


def _dtype_hint(dtype: Any) -> str:
    if isinstance(dtype, str):
        return (
            f"; dtype may be a name such as {dtype!r}, not only a torch dtype: kv_cache_bytes accepts both, "
            "so pass it on"
        )
    return ""


def _value(
    fn: Callable[..., Any], shape: ModelShape, tp: int, seq_len: int, batch: int, dtype: Any, **how: Any
):
    """One valid split: the learner's result must be `kv_cache_bytes` of its KV heads per GPU, an int."""
    heads, why = _split(shape, tp)
    assert heads is not None, why
    label = _label(shape, tp, seq_len, batch, dtype)
    if how.get("defaults"):
        assert batch == 1 and dtype == torch.float16
        args, kwargs = (shape, tp, seq_len), {}
        label = label.split(", batch=")[0] + ") (batch and dtype left to their defaults, 1 and torch.float16)"
    elif how.get("keywords"):
        label += " (every argument after shape by keyword)"
        args, kwargs = (shape,), {"tp": tp, "seq_len": seq_len, "batch": batch, "dtype": dtype}
    else:
        args, kwargs = (shape, tp, seq_len, batch, dtype), {}
    try:
        got = fn(*args, **kwargs)
    except NotImplementedError:
        raise CheckFailed(f"{NAME} is not implemented yet (it raised NotImplementedError)") from None
    except ValueError as exc:
        raise CheckFailed(f"{label} raised ValueError ({exc}), but the split is valid: {why}") from None
    except Exception as exc:  # noqa: BLE001 - any learner error becomes feedback
        hint = _dtype_hint(dtype)
        if isinstance(exc, TypeError) and "float" in str(exc):
            hint += ": the KV heads per GPU are a whole number (integer division, //)"
        raise CheckFailed(f"{label} raised {type(exc).__name__}: {exc}{hint}") from None
    want = _bytes(shape, heads, seq_len, batch, dtype)
    value = as_number(got, f"{label}'s result")
    if isinstance(got, numbers.Integral):
        value = int(got)
    if value != want:
        variants = _variants(shape, tp, heads, seq_len, batch, dtype).items()
        mistakes = [message for message, wrong in variants if math.isclose(value, wrong, rel_tol=1e-12)]
        if mistakes:  # two mistakes may give the same number here: name the likeliest two
            raise CheckFailed(f"{label} returned {got!r}, expected {want}: " + "; or ".join(mistakes[:2]))
        raise CheckFailed(
            f"{label} returned {got!r}, expected {want} = kv_cache_bytes(num_layers, {heads} KV heads per "
            f"GPU, head_dim, seq_len, batch, dtype) ({why})"
        )
    as_int(got, f"{label}'s result (a number of bytes)")


def _error(fn: Callable[..., Any], shape: ModelShape, tp: int, seq_len: int = 1024, batch: int = 1) -> None:
    """One split the docstring rules out: the learner's function must raise ValueError."""
    heads, why = _split(shape, tp)
    assert heads is None, why
    label = _label(shape, tp, seq_len, batch, torch.float16)
    hint = ": check tp < 1 before dividing by it" if tp == 0 else ""
    expect_value_error(fn, NAME, label, (shape, tp, seq_len, batch, torch.float16), why, hint)


def _sweep(fn: Callable[..., Any], shape: ModelShape, tps: Any, seq_len: int, batch: int, dtype: Any) -> None:
    for tp in tps:
        if _split(shape, tp)[0] is None:
            _error(fn, shape, tp, seq_len, batch)
        else:
            _value(fn, shape, tp, seq_len, batch, dtype)


def _same_name(fn: Callable[..., Any]) -> None:
    first = ModelShape("twin", 2, 8, 8, 64, 512, 256, 0.1, "grader")
    second = ModelShape("twin", 3, 8, 2, 64, 512, 256, 0.1, "grader")
    _value(fn, first, 4, 100, 1, torch.float16)
    try:
        got = fn(second, 4, 100, 1, torch.float16)
    except Exception:  # noqa: BLE001 - _value below reports it
        got = None
    if got is not None and got == _bytes(first, 2, 100, 1, torch.float16):
        raise CheckFailed(
            f"{NAME} returned for a second shape named {second.name!r} (3 layers, 2 KV heads) the answer of "
            "an earlier call with another shape of that name (2 layers, 8 KV heads): the result must come "
            "from this call's shape, not from a memo keyed by its name"
        )
    _value(fn, second, 4, 100, 1, torch.float16)


@graded(NAME, *REFERENCES)
def kv_bytes_per_gpu_visible(fn: Callable[..., Any]) -> None:
    """Real models: heads split (Llama-2-7B, Llama-2-70B tp 8), a KV head copied (tp 16), an invalid split."""
    _value(fn, MODEL_CONFIGS["Llama-2-7B"], 4, 4096, 1, torch.float16)
    _value(fn, MODEL_CONFIGS["Llama-2-70B"], 8, 4096, 4, torch.float16)
    _value(fn, MODEL_CONFIGS["Llama-2-70B"], 16, 4096, 4, torch.float16)
    _error(fn, MODEL_CONFIGS["GPT-2 XL 1.5B"], 2)  # 25 query heads
    _error(fn, _hand_made(12, 4), 8)  # a multiple of the KV heads, but not dividing the query heads
    _error(fn, MODEL_CONFIGS["Llama-2-70B"], 0)  # tp < 1
    print("visible tests passed")


@graded(NAME, *REFERENCES)
def kv_bytes_per_gpu_hidden(fn: Callable[..., Any]) -> None:
    """Every model of MODEL_CONFIGS at tp 1..16 and beyond, hand-made shapes for each rule, dtype
    spellings, defaults and keywords, batch > 1, long sequences, tp < 1."""
    llama70 = MODEL_CONFIGS["Llama-2-70B"]
    _value(fn, llama70, 16, 4096, 4, torch.float16)  # past tp = num_kv_heads: one KV head copied
    _value(fn, llama70, 64, 4096, 4, torch.float16)
    # The rules one at a time, on shapes whose KV heads do not split evenly.
    three = _hand_made(12, 3)
    _value(fn, three, 6, 1000, 2, torch.float16)  # 3 KV heads on 6 GPUs: each copied to 2
    _value(fn, three, 3, 1000, 2, torch.float16)
    _value(fn, three, 12, 1000, 2, torch.float16)
    _error(fn, three, 4)  # more GPUs than KV heads, not a multiple of them
    _error(fn, three, 2)  # fewer GPUs than KV heads, not dividing them
    _error(fn, _hand_made(12, 4), 8)  # a multiple of the KV heads, but not dividing the query heads
    _error(fn, _hand_made(12, 4), 6)
    _error(fn, _hand_made(12, 6), 4)
    _error(fn, MODEL_CONFIGS["Qwen2-7B"], 7)  # 28 query heads, 4 KV heads: 7 is no multiple of 4
    for tp in (0, -1, -8):
        _error(fn, llama70, tp)
    _error(fn, MODEL_CONFIGS["GPT-2 124M"], 0)
    # Every model, tp 1..16 and beyond, with batch > 1 and a length past any visible one.
    for i, shape in enumerate(MODEL_CONFIGS.values()):
        _sweep(fn, shape, range(1, 17), 100 + i, 3, torch.bfloat16)
        _sweep(fn, shape, LARGE_TPS, shape.max_seq_len + 1, 2, "fp16")
    for shape in (_hand_made(24, 6, 3, 80), _hand_made(16, 1, 2, 128), _hand_made(30, 5, 5, 96)):
        _sweep(fn, shape, range(-2, 33), 257, 5, torch.float16)
    # Two shapes with one name: the answer depends on the shape's numbers, never on a memo keyed by its name.
    _same_name(fn)
    # Every dtype spelling kv_cache_bytes accepts, and an int2 byte count that needs rounding up.
    for dtype in DTYPES:
        _value(fn, MODEL_CONFIGS["Llama-3-8B"], 8, 1000, 3, dtype)
        _value(fn, MODEL_CONFIGS["Llama-3-8B"], 16, 1000, 3, dtype)
        _value(fn, MODEL_CONFIGS["Llama-3-8B"], 2, 1000, 3, dtype)
    _value(fn, _hand_made(6, 3, 3, 5), 3, 7, 1, "int2")
    # The defaults (batch=1, fp16), keywords, and sizes far past the visible ones.
    _value(fn, MODEL_CONFIGS["Mistral-7B"], 4, 8192, 1, torch.float16, defaults=True)
    _value(fn, MODEL_CONFIGS["Mistral-7B"], 32, 8192, 1, torch.float16, defaults=True)
    _value(fn, MODEL_CONFIGS["Mixtral-8x7B"], 2, 32768, 7, "int8", keywords=True)
    _value(fn, MODEL_CONFIGS["Llama-3.1-405B"], 8, 131072, 64, torch.bfloat16)
    _value(fn, MODEL_CONFIGS["Llama-3.1-405B"], 128, 1_000_003, 256, "int4")
    _value(fn, MODEL_CONFIGS["GPT-2 124M"], 1, 1, 1, torch.float32)
    print("hidden tests passed")
