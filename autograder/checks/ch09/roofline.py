"""Exercise 6 of chapter 09: `decode_step_costs`, the FLOPs and bytes of one decode step.

Graded by value, key by key (relative tolerance 1e-9), against the docstring's four formulas over every
shape of `MODEL_CONFIGS` and hand-made ones (query/KV head ratios of 1, 3, 7, 8, 16, odd head_dims),
batches up to 1,000, contexts past 128k, every dtype spelling, the default dtype and keywords. The
result must be a dict of exactly the four keys, each a float, a new dict per call (an earlier result
does not change when the function is called again), and nothing kept between calls.

A wrong value is diagnosed first by recomputing the usual slips and naming the one matched: the
weights' bytes multiplied by the batch (read per request), 1 FLOP per multiply-add, num_kv_heads in
the attention FLOPs or num_heads in the attention bytes, the factor 2 of K and V forgotten in the
bytes, the batch ignored in attention, params_b not multiplied by 10**9, the dtype ignored, elements
instead of bytes, hidden_size for num_heads * head_dim.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable
from typing import Any

import torch

from kvlib.memory import MODEL_CONFIGS, ModelShape, bytes_per_element

from ..common import CheckFailed
from ..delegation import graded
from .shapes import hand_made, shape_label

NAME = "decode_step_costs"
REFERENCES = ("kvlib.roofline.decode_step_costs",)
KEYS = ("matmul_flops", "matmul_bytes", "attention_flops", "attention_bytes")
REL_TOL = 1e-9
DTYPES = ("bf16", torch.bfloat16, "bfloat16", "fp16", torch.float16, "float16", "fp32", torch.float32, "fp8",
          "int8", torch.int8, "int4", "float32", "half", "int2", "float8_e4m3fn")  # fmt: skip


def costs(
    shape: ModelShape,
    batch: int,
    context_len: int,
    dtype: Any,
    *,
    params_unit: float = 1e9,
    flops_per_mac: int = 2,
    b: float | None = None,
    weight_reads: int = 1,
    flop_heads: int | None = None,
    byte_heads: int | None = None,
    attention_batch: int | None = None,
    kv: int = 2,
    q_width: int | None = None,
    kv_width: int | None = None,
) -> dict[str, float]:
    """The docstring's four numbers; a keyword changes one part of them, as a slip does."""
    b = bytes_per_element(dtype) if b is None else b
    params = shape.params_b * params_unit
    tokens = shape.num_layers * context_len * (batch if attention_batch is None else attention_batch)
    q_width = (
        (shape.num_heads if flop_heads is None else flop_heads) * shape.head_dim
        if q_width is None
        else q_width
    )
    kv_width = (
        (shape.num_kv_heads if byte_heads is None else byte_heads) * shape.head_dim
        if kv_width is None
        else kv_width
    )
    return {
        "matmul_flops": flops_per_mac * params * batch,
        "matmul_bytes": params * b * weight_reads,
        "attention_flops": 2.0 * flops_per_mac * q_width * tokens,
        "attention_bytes": float(kv * kv_width * tokens) * b,
    }


def variants(shape: ModelShape, batch: int, context_len: int, dtype: Any) -> dict[str, dict[str, float]]:
    """The usual slips: message -> the four numbers they give (only the changed keys matter)."""
    b = bytes_per_element(dtype)
    h, kv, d = shape.num_heads, shape.num_kv_heads, shape.head_dim
    slips: list[tuple[str, dict[str, Any]]] = [
        (
            "the weights' bytes multiplied by the batch: the weights are read once for the whole batch of "
            f"{batch}, not once per request",
            {"weight_reads": batch},
        ),
        ("1 FLOP per multiply-add: a multiply-add is 2 FLOPs (a multiply and an add)", {"flops_per_mac": 1}),
        (
            f"num_kv_heads instead of num_heads in the attention FLOPs ({kv} KV heads, {h} query heads): "
            "every query head computes its own scores and weighted sum, even when it shares its keys and "
            "values",
            {"flop_heads": kv},
        ),
        (
            f"num_heads instead of num_kv_heads in the attention bytes ({h} query heads, {kv} KV heads): the "
            "cache holds the KV heads, read once for every query head that shares them",
            {"byte_heads": h},
        ),
        ("keys only: the attention bytes are the keys AND the values (the factor 2)", {"kv": 1}),
        ("keys and values counted twice: the factor 2 appears once", {"kv": 4}),
        (
            f"the batch is ignored in attention: each of the {batch} requests attends over its own cache",
            {"attention_batch": 1},
        ),
        ("params_b not multiplied by 10**9: params_b counts billions of parameters", {"params_unit": 1}),
        ("params_b multiplied by 2**30: a billion parameters is 10**9", {"params_unit": 2**30}),
        (
            f"the dtype is ignored (2 bytes per number): {dtype!r} has {b:g} bytes, bytes_per_element(dtype)",
            {"b": 2},
        ),
        ("elements, not bytes: multiply by bytes_per_element(dtype)", {"b": 1}),
        (
            f"hidden_size ({shape.hidden_size}) for num_heads * head_dim ({h * d}) in the attention FLOPs: "
            "every query head has head_dim channels",
            {"q_width": shape.hidden_size},
        ),
        (
            f"hidden_size ({shape.hidden_size}) for the KV width num_kv_heads * head_dim ({kv * d}) in the "
            "attention bytes: the cache stores the key projection's width",
            {"kv_width": shape.hidden_size},
        ),
    ]
    out = {message: costs(shape, batch, context_len, dtype, **how) for message, how in slips}
    no_batch = (
        f"the batch is ignored in the matmuls: each of the {batch} requests' tokens goes through every weight"
    )
    out[no_batch] = {**costs(shape, batch, context_len, dtype), "matmul_flops": 2.0 * shape.params_b * 1e9}
    return out


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-300)


def _label(shape: ModelShape, batch: int, context_len: int, dtype: Any) -> str:
    return f"{NAME}({shape_label(shape)}, batch={batch}, context_len={context_len}, dtype={dtype!r})"


def _formula(key: str) -> str:
    return {
        "matmul_flops": "2 * params * batch, params = params_b * 10**9",
        "matmul_bytes": "params * bytes_per_element(dtype), params = params_b * 10**9",
        "attention_flops": "4 * num_layers * num_heads * head_dim * context_len * batch",
        "attention_bytes": (
            "2 * num_layers * num_kv_heads * head_dim * context_len * batch * bytes_per_element(dtype)"
        ),
    }[key]


def _number(value: Any) -> float | None:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return None


def _type_problem(value: Any) -> str | None:
    if isinstance(value, float):  # NumPy's float64 is a float too
        return None
    if isinstance(value, torch.Tensor):
        return "a tensor: return a Python float (.item(), or float(...))"
    if isinstance(value, numbers.Integral):
        return f"an int ({type(value).__name__}): the docstring promises floats, use float(...) or 2.0"
    return f"a {type(value).__name__}: return a Python float"


def _check(
    fn: Callable[..., Any],
    shape: ModelShape,
    batch: int,
    context_len: int,
    dtype: Any = "bf16",
    how: str = "",
) -> dict:
    label = _label(shape, batch, context_len, dtype)
    if how == "default":
        assert dtype == "bf16"
        args, kwargs = (shape, batch, context_len), {}
        label = (
            f"{NAME}({shape_label(shape)}, batch={batch}, context_len={context_len}) (dtype left to 'bf16')"
        )
    elif how == "keywords":
        args, kwargs = (shape,), {"batch": batch, "context_len": context_len, "dtype": dtype}
        label += " (every argument after shape by keyword)"
    else:
        args, kwargs = (shape, batch, context_len, dtype), {}
    before = dataclasses.astuple(shape)
    try:
        got = fn(*args, **kwargs)
    except NotImplementedError:
        raise CheckFailed(f"{NAME} is not implemented yet (it raised NotImplementedError)") from None
    except CheckFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - any learner error becomes feedback
        hint = ""
        if isinstance(dtype, str) and isinstance(exc, (KeyError, TypeError, AttributeError)):
            hint = (
                "; a dtype may be a name such as 'bf16' or 'int8', not only a torch.dtype: "
                "bytes_per_element(dtype) accepts both"
            )
        raise CheckFailed(f"{label} raised {type(exc).__name__}: {exc}{hint}") from None
    if dataclasses.astuple(shape) != before:
        raise CheckFailed(f"{label} changed the shape it was given: read the ModelShape, never write to it")
    if not isinstance(got, dict):
        raise CheckFailed(f"{label} must return a dict with the keys {list(KEYS)}, got {type(got).__name__}")
    missing = [k for k in KEYS if k not in got]
    extra = [k for k in got if k not in KEYS]
    if missing or extra:
        raise CheckFailed(
            f"{label} must return a dict of exactly the keys {list(KEYS)}"
            + (f"; missing {missing}" if missing else "")
            + (f"; unexpected {extra}" if extra else "")
        )
    want = costs(shape, batch, context_len, dtype)
    slips = variants(shape, batch, context_len, dtype)
    for key in KEYS:
        value = _number(got[key])
        if value is None:
            raise CheckFailed(f"{label}[{key!r}] must be a float, got {got[key]!r:.60}")
        if not _close(value, want[key]):
            named = [m for m, v in slips.items() if not _close(v[key], want[key]) and _close(value, v[key])]
            because = ": " + "; or ".join(named[:2]) if named else f" = {_formula(key)}"
            raise CheckFailed(f"{label}[{key!r}] is {got[key]!r}, expected {want[key]!r}{because}")
    for key in KEYS:
        problem = _type_problem(got[key])
        if problem:
            raise CheckFailed(f"{label}[{key!r}] must be a float, got {problem}")
    return got


def _no_shared_result(fn: Callable[..., Any]) -> None:
    """A result must not change when the function is called again (a new dict per call, no state)."""
    first_shape, second_shape = MODEL_CONFIGS["Llama-3-8B"], MODEL_CONFIGS["Llama-2-7B"]
    first = _check(fn, first_shape, 4, 1000)
    copy = dict(first)
    _check(fn, second_shape, 64, 7, "fp32")
    if dict(first) != copy:
        raise CheckFailed(
            f"{NAME}: the dict returned for {first_shape.name} changed after a later call with another "
            "shape: build a new dict in every call, never one shared at module level"
        )


def _same_name(fn: Callable[..., Any]) -> None:
    """Shapes named alike (the third has the first's layers and parameters, other KV heads and head_dim): each
    answer comes from its own shape, not from a memo keyed by the name (or by the name and some sizes)."""
    first = ModelShape("twin", 2, 8, 8, 64, 512, 256, 0.1, "grader")
    others = (
        (ModelShape("twin", 3, 8, 2, 64, 512, 256, 0.2, "grader"), "3 layers, 2 KV heads of 64, 0.2B params"),
        (ModelShape("twin", 2, 8, 2, 32, 512, 256, 0.1, "grader"), "2 layers, 2 KV heads of 32, 0.1B params"),
    )
    answer = dict(_check(fn, first, 4, 100))
    for second, is_ in others:
        try:
            got = fn(second, 4, 100, "bf16")
        except Exception:  # noqa: BLE001 - _check below reports it
            got = None
        if isinstance(got, dict) and any(_close(_number(got.get(k)) or 0.0, answer[k]) for k in KEYS[2:]):
            raise CheckFailed(
                f"{NAME} returned for another shape named 'twin' ({is_}) the attention costs of an earlier "
                "call with a shape of that name (2 layers, 8 KV heads of 64, 0.1B params): the result must "
                "come from this call's shape, not from a memo keyed by the model's name (or by its name and "
                "some of its sizes)"
            )
        _check(fn, second, 4, 100)


def _again(fn: Callable[..., Any], shape: ModelShape, batch: int, context_len: int, dtype: Any) -> None:
    try:
        _check(fn, shape, batch, context_len, dtype)
    except CheckFailed as exc:
        raise CheckFailed(
            f"{exc} (the same call passed earlier, before other calls: {NAME} must not keep anything between "
            "calls, such as a module-level variable or a memo keyed by the model's name)"
        ) from None


@graded(NAME, *REFERENCES)
def decode_step_costs_visible(fn: Callable[..., Any]) -> None:
    """Llama-3-8B (GQA-4) at batch 1 and 16, Llama-2-7B (MHA) in fp16, Llama-3-70B at batch 64, fp32."""
    _check(fn, MODEL_CONFIGS["Llama-3-8B"], 1, 16)
    _check(fn, MODEL_CONFIGS["Llama-3-8B"], 16, 4096)
    _check(fn, MODEL_CONFIGS["Llama-2-7B"], 8, 2048, "fp16")
    _check(fn, MODEL_CONFIGS["Llama-3-70B"], 64, 4096, torch.float32)
    print("visible tests passed")


@graded(NAME, *REFERENCES)
def decode_step_costs_hidden(fn: Callable[..., Any]) -> None:
    """Every model at several batches and contexts, hand-made head ratios and odd head_dims, every dtype
    spelling, the default dtype and keywords, batches to 1,000 and contexts past 128k, no shared state."""
    first = (MODEL_CONFIGS["Qwen2-7B"], 3, 5000, "bf16")
    _check(fn, *first)
    for i, shape in enumerate(MODEL_CONFIGS.values()):
        for batch in (1, 7, 256):
            _check(fn, shape, batch, 1000 + i, "bf16")
        _check(fn, shape, 1000, shape.max_seq_len + 1, "fp16")
    for shape in (hand_made(12, 4, 64), hand_made(21, 3, 80, 3, 0.7), hand_made(16, 1, 96, 2, 2.25),
                  hand_made(7, 7, 5, 6, 0.05), hand_made(24, 3, 6, 5, 13.0)):  # fmt: skip
        for batch, context_len in ((1, 1), (5, 999), (33, 4097)):
            _check(fn, shape, batch, context_len, "fp16")
    for dtype in DTYPES:
        _check(fn, MODEL_CONFIGS["Llama-3-70B"], 9, 3000, dtype)
        _check(fn, MODEL_CONFIGS["Gemma-7B"], 2, 777, dtype)
    _check(fn, MODEL_CONFIGS["Llama-3-8B"], 32, 8192, how="default")
    _check(fn, MODEL_CONFIGS["Mixtral-8x7B"], 12, 32768, "fp8", how="keywords")
    _check(fn, MODEL_CONFIGS["Llama-3.1-405B"], 1000, 131072, "bf16")
    _check(fn, MODEL_CONFIGS["Llama-3.1-405B"], 4096, 1_000_003, "int4")
    _check(fn, MODEL_CONFIGS["GPT-2 124M"], 1, 1, "fp32")
    # Two shapes with one name: the answer comes from this call's shape, never from a memo keyed by its name.
    _same_name(fn)
    _no_shared_result(fn)
    _again(fn, *first)
    print("hidden tests passed")
