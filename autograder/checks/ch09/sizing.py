"""Exercises `kv_gib`, `gpus_needed` and `prefix_cached_bytes`: chapter 09's sizing drills.

Graded by value against kvlib.sizing over every shape of `MODEL_CONFIGS` and hand-made ones (grouped-query
attention, a model width that is not `num_heads * head_dim`, no weights at all), loads far past the visible
ones (batches of 1000+, 128k tokens, 100,000 users), every dtype spelling the docstrings allow, the
defaults and keywords, and the edge cases the docstrings name (an empty load, no users, one user, blocks of
1 and 256 tokens, a prompt shorter than a block or a whole number of blocks). Floats are compared to
1e-6 relative, ints exactly, and the promised type (float for `kv_gib`, int for the other two) is checked
once the value is right.

When an answer is off, the usual slips are recomputed (keys and values, the KV width, GB for GiB, a shared
prefix stored per user, weights counted per request, the rounding rules, utilization, billions of
parameters, an ignored batch or dtype) and the one that matches is named. Several slips can give the same
number on one input (an integer count of GPUs especially), so the learner's function is also run on a few
probe inputs that tell them apart, and only the slips that explain every probe are named.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import torch

from kvlib.memory import MODEL_CONFIGS, ModelShape, bytes_per_element

from ..common import CheckFailed, as_int, as_number, shown
from ..delegation import graded

GiB = 2**30

# kvlib.sizing's functions are the answers; kv_cache_bytes and ModelShape.kv_bytes hand in all of kv_gib.
# gpus_needed and prefix_cached_bytes may use them for their KV part (the setup cell imports
# kv_cache_bytes, and chapter 02 was about it): only kvlib.sizing hands in their answer.
KV_GIB_REFERENCES = (
    "kvlib.sizing.kv_gib",
    "kvlib.sizing",
    "kvlib.memory.kv_cache_bytes",
    "kvlib.memory.ModelShape.kv_bytes",
    "kvlib.memory.ModelShape.kv_bytes_per_token",
)
GPUS_REFERENCES = ("kvlib.sizing.gpus_needed", "kvlib.sizing")
PREFIX_REFERENCES = ("kvlib.sizing.prefix_cached_bytes", "kvlib.sizing")

# Every spelling the docstrings allow ("a name such as 'fp16', 'int8', 'int4' or a torch.dtype"; what
# bytes_per_element accepts, 'half' and 'int2' too), 1/4, 1/2, 1, 2, 4 and 8 bytes per element.
DTYPES = (
    "fp16",
    "bf16",
    "fp32",
    "int8",
    "int4",
    "fp8",
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.int8,
    torch.uint8,
    torch.float8_e4m3fn,
    torch.float64,
    "float16",
    "bfloat16",
    "float32",
    "half",  # more names bytes_per_element accepts: "anything bytes_per_element accepts" (kv_gib)
    "double",
    "int2",
)


def hand_made(
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    head_dim: int,
    hidden_size: int | None = None,
    params_b: float = 1.0,
    name: str | None = None,
) -> ModelShape:
    """A shape no published model has (the name says what it is, for the messages)."""
    hidden = num_heads * head_dim if hidden_size is None else hidden_size
    name = name or (
        f"a hand-made shape: {num_layers} layers, {num_heads} heads, {num_kv_heads} KV heads of {head_dim}, "
        f"hidden_size {hidden}, {params_b:g}B parameters"
    )
    return ModelShape(name, num_layers, num_heads, num_kv_heads, head_dim, hidden, 4096, params_b, "grader")


# A GQA-3 shape whose model width is neither num_heads * head_dim nor num_kv_heads * head_dim: on it the
# KV width, the query heads' width and hidden_size all differ.
ODD = hand_made(3, 12, 4, 80, hidden_size=1000, params_b=2.5)
NO_WEIGHTS = hand_made(2, 4, 2, 128, params_b=0.0)  # every byte is KV: loads that fill GPUs exactly


def _bpe(dtype: Any) -> Fraction:
    return Fraction(bytes_per_element(dtype))  # 0.5 and 0.25 are exact floats


def _kv(
    shape: ModelShape,
    seq_len: int,
    batch: int,
    dtype: Any,
    *,
    factor: int = 2,
    width: int | None = None,
    bpe: Fraction | int | None = None,
    layers: int | None = None,
) -> Fraction:
    """KV bytes, exactly, with one term of the formula changed at a time (the slips)."""
    b = _bpe(dtype) if bpe is None else Fraction(bpe)
    w = shape.num_kv_heads * shape.head_dim if width is None else width
    num_layers = shape.num_layers if layers is None else layers
    return factor * num_layers * w * seq_len * batch * b


def _width_slips(shape: ModelShape) -> dict[str, tuple[str, dict]]:
    """The KV width slips (as _kv keyword arguments), only where they differ on this shape."""
    kv_width = shape.num_kv_heads * shape.head_dim
    out: dict[str, tuple[str, dict]] = {}
    if shape.hidden_size != kv_width:
        out["hidden_size"] = (
            f"hidden_size (the model width, {shape.hidden_size}) used for the KV width: each layer stores, "
            f"per token, a key and a value of num_kv_heads * head_dim = {kv_width} numbers",
            {"width": shape.hidden_size},
        )
    if shape.num_heads != shape.num_kv_heads:
        out["num_heads"] = (
            f"num_heads ({shape.num_heads}) instead of num_kv_heads ({shape.num_kv_heads}): under "
            "grouped-query attention only the KV heads are cached",
            {"width": shape.num_heads * shape.head_dim},
        )
    return out


def _dtype_slips(dtype: Any, what: str = "dtype") -> dict[str, tuple[str, dict]]:
    b = _bpe(dtype)
    size = _plural(float(b), "byte")
    out: dict[str, tuple[str, dict]] = {}
    if b < 1:
        out["packed"] = (
            f"a packed {what}={dtype!r} counted as a whole byte per element: it is {size} per "
            "element (bytes_per_element)",
            {"bpe": 1},
        )
    if b != 2:
        out["dtype_ignored"] = (
            f"{what} is ignored (2 bytes per element used): {dtype!r} is {size} per element, "
            "bytes_per_element(dtype)",
            {"bpe": 2},
        )
    if b not in (1, 2):
        out["no_bpe"] = (
            f"the bytes per element are missing: {dtype!r} is {size} per element, multiply the "
            "number of elements by bytes_per_element(dtype)",
            {"bpe": 1},
        )
    return out


def _plural(count: float, noun: str) -> str:
    return f"{count:g} {noun}" + ("" if count == 1 else "s")


def _model(shape: ModelShape) -> str:
    return shape.name


def _label(name: str, shape: ModelShape, args: dict[str, Any], note: str = "") -> str:
    rendered = ", ".join(f"{k}={v!r}" for k, v in args.items())
    return f"{name}({_model(shape)}, {rendered})" + (f" ({note})" if note else "")


def _dtype_hint(args: dict[str, Any]) -> str:
    dtypes = [v for k, v in args.items() if "dtype" in k]
    if not dtypes:
        return ""
    return (
        f"; the dtype may be a name such as 'fp16', 'bf16', 'int8', 'int4', 'fp8' or a torch.dtype such as "
        f"torch.float16 (here {', '.join(repr(d) for d in dtypes)}): bytes_per_element(dtype), imported in "
        "the setup cell, accepts them all"
    )


@dataclass(frozen=True)
class Case:
    """One question: the shape, the other arguments in signature order, how to call."""

    shape: ModelShape
    args: dict[str, Any]
    how: str = "positional"  # "positional", "keywords" or "defaults" (only the required arguments)
    strict: bool = False  # gpus_needed: every quantity exact, so no rounding slack at a whole number


@dataclass(frozen=True)
class Exercise:
    name: str
    required: tuple[str, ...]  # arguments after shape that have no default
    unit: str  # for messages: "GiB", "GPUs", "bytes"
    expected: Callable[[Case], Any]  # the right value (for gpus_needed: the set of accepted values)
    slips: Callable[[Case], dict[str, tuple[str, Any]]]  # key -> (message, the slip's value)
    same: Callable[[float, Any], bool]
    probes: tuple[Case, ...]
    formula: str
    returns: str  # "float" or "int"

    def accepts(self, case: Case, value: float) -> bool:
        want = self.expected(case)
        if isinstance(want, frozenset):
            return any(self.same(value, w) for w in want)
        return self.same(value, want)

    def shown_expected(self, case: Case) -> str:
        want = self.expected(case)
        if isinstance(want, frozenset):
            unit = self.unit.removesuffix("s") if want == {1} else self.unit
            return " or ".join(str(w) for w in sorted(want)) + f" {unit}"
        if isinstance(want, float):
            return f"{want!r} {self.unit}"
        return f"{want} {self.unit}"


def _invoke(fn: Callable[..., Any], ex: Exercise, case: Case) -> Any:
    if case.how == "keywords":
        return fn(case.shape, **case.args)
    if case.how == "defaults":
        return fn(case.shape, *(case.args[k] for k in ex.required))
    return fn(case.shape, *case.args.values())


def _case_label(ex: Exercise, case: Case) -> str:
    if case.how == "defaults":
        shown_args = {k: case.args[k] for k in ex.required}
        left = ", ".join(f"{k}={v!r}" for k, v in case.args.items() if k not in ex.required)
        return _label(ex.name, case.shape, shown_args, f"the other arguments left to their defaults, {left}")
    return _label(
        ex.name,
        case.shape,
        case.args,
        "every argument after shape by keyword" if case.how == "keywords" else "",
    )


def _diagnose(fn: Callable[..., Any], ex: Exercise, case: Case, value: float) -> list[str]:
    """Messages of the slips that explain `value` on `case` and the learner's answers to every probe.

    A slip that matches here but not on a probe is not what the learner did (a count of GPUs is small, so
    another formula often lands on the same number by chance): then no slip is named, only the formula.
    """
    slips = ex.slips(case)
    keys = [k for k, (_, v) in slips.items() if ex.same(value, v)]
    for probe in ex.probes if keys else ():
        try:
            got = as_number(_invoke(fn, ex, probe), "probe")
        except Exception:  # noqa: BLE001 - a probe the learner cannot answer says nothing here
            continue
        probe_slips = ex.slips(probe)
        keys = [
            k
            for k in keys
            if (ex.same(got, probe_slips[k][1]) if k in probe_slips else ex.accepts(probe, got))
        ]
    return [slips[k][0] for k in keys[:2]]


def _check(fn: Callable[..., Any], ex: Exercise, case: Case) -> None:
    """The learner's answer to one question: the right value first, then the promised type."""
    label = _case_label(ex, case)
    try:
        raw = _invoke(fn, ex, case)
    except NotImplementedError:
        raise CheckFailed(f"{ex.name} is not implemented yet (it raised NotImplementedError)") from None
    except CheckFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - any learner error becomes feedback
        hint = (
            _dtype_hint(case.args)
            if isinstance(exc, (KeyError, TypeError, ValueError, AttributeError))
            else ""
        )
        raise CheckFailed(f"{label} raised {type(exc).__name__}: {exc}{hint}") from None
    value = as_number(raw, f"{label}'s result")
    if not ex.accepts(case, value):
        causes = _diagnose(fn, ex, case, value)
        raise CheckFailed(
            f"{label} returned {shown(raw)}, expected {ex.shown_expected(case)}: "
            + ("; or ".join(causes) if causes else ex.formula)
            + (
                "; the arguments left out take the defaults of the signature: are yours the same?"
                if case.how == "defaults" and not causes
                else ""
            )
        )
    if ex.returns == "float":
        _as_float(raw, label)
    else:
        as_int(raw, f"{label}'s result (the right value, {ex.shown_expected(case)})")


def _as_float(raw: Any, label: str) -> None:
    """The docstring promises a float: a Python or NumPy float (np.float64 is a float); nothing else."""
    if isinstance(raw, float) or (
        isinstance(raw, numbers.Real)
        and not isinstance(raw, numbers.Integral)
        and type(raw).__module__ == "numpy"
    ):
        return
    if isinstance(raw, torch.Tensor):
        raise CheckFailed(
            f"{label} returned a tensor ({shown(raw)}) with the right value: the docstring promises a float, "
            "convert it with .item() or float(...)"
        )
    if isinstance(raw, numbers.Integral):
        raise CheckFailed(
            f"{label} returned the int {raw!r}, right here only because the answer is a whole number of GiB: "
            "the docstring promises a float, not rounded: divide with /, not //"
        )
    raise CheckFailed(
        f"{label} returned a {type(raw).__name__} ({shown(raw)}) with the right value: the docstring "
        "promises a float, convert it with float(...)"
    )


def _run(fn: Callable[..., Any], ex: Exercise, cases: Iterable[Case]) -> None:
    for case in cases:
        _check(fn, ex, case)


# Shapes named alike: the second differs from the first in its layers, KV heads and parameters, the third in
# its KV heads and head_dim only (same name and layer count: a memo keyed by (name, num_layers) shows too).
TWINS = (
    (ModelShape("twin", 2, 8, 8, 64, 512, 256, 1.0, "grader"), "2 layers, 8 KV heads of 64, 1B parameters"),
    (ModelShape("twin", 3, 8, 2, 64, 512, 256, 3.0, "grader"), "3 layers, 2 KV heads of 64, 3B parameters"),
    (ModelShape("twin", 2, 8, 2, 32, 512, 256, 1.0, "grader"), "2 layers, 2 KV heads of 32, 1B parameters"),
)


def _same_name(fn: Callable[..., Any], ex: Exercise, make: Callable[[ModelShape], Case]) -> None:
    """Shapes with one name: the answer comes from this call's numbers, never from a memo by name."""
    (first, first_is), *others = TWINS
    _check(fn, ex, make(first))
    for other, other_is in others:
        try:
            got = as_number(_invoke(fn, ex, make(other)), "twin")
        except Exception:  # noqa: BLE001 - _check below reports it
            got = None
        if got is not None and ex.accepts(make(first), got) and not ex.accepts(make(other), got):
            raise CheckFailed(
                f"{ex.name} answered for another shape named 'twin' ({other_is}) the answer of an earlier "
                f"call with a shape of that name ({first_is}): the result must come from this call's shape, "
                "not from a memo or a variable kept between calls (keyed by the name, or by the name and "
                "some of the sizes)"
            )
        _check(fn, ex, make(other))


def _again(fn: Callable[..., Any], ex: Exercise, case: Case) -> None:
    """The same question asked again gives the same answer (nothing accumulated between calls)."""
    try:
        _check(fn, ex, case)
    except CheckFailed as exc:
        raise CheckFailed(
            f"{exc} (this question was answered right earlier: asked again, the answer changed, so something "
            "is kept between calls, such as a global total or a default argument that is modified)"
        ) from None


# ---------------------------------------------------------------------------------------------------------
# kv_gib
# ---------------------------------------------------------------------------------------------------------


def _kv_gib_case(
    shape: ModelShape, seq_len: int, batch: int = 1, dtype: Any = "fp16", how: str = "positional"
) -> Case:
    return Case(shape, {"seq_len": seq_len, "batch": batch, "dtype": dtype}, how)


def _kv_gib_expected(case: Case) -> float:
    from kvlib.sizing import kv_gib

    return kv_gib(case.shape, *case.args.values())


def _kv_gib_slips(case: Case) -> dict[str, tuple[str, float]]:
    s, a = case.shape, case.args
    T, B, d = a["seq_len"], a["batch"], a["dtype"]
    right = _kv(s, T, B, d)
    formula: dict[str, tuple[str, dict]] = {
        **_dtype_slips(d),
        "no_two": ("the factor 2 is missing: every layer caches keys AND values", {"factor": 1}),
        **_width_slips(s),
        "batch": (f"batch is ignored: each of the {B} requests holds its own cache", {"batch": 1}),
        "seq_len": (
            f"seq_len is ignored: every one of the {T} tokens adds its keys and values",
            {"seq_len": 1},
        ),
        "layers": (f"num_layers is ignored: each of the {s.num_layers} layers caches its own", {"layers": 1}),
        "two_twice": ("the factor 2 is counted twice: keys and values make one factor 2", {"factor": 4}),
    }
    out: dict[str, tuple[str, float]] = {}
    for key, (message, change) in formula.items():
        args = {"seq_len": T, "batch": B, **{k: v for k, v in change.items() if k in ("seq_len", "batch")}}
        rest = {k: v for k, v in change.items() if k not in ("seq_len", "batch")}
        out[key] = (message, float(_kv(s, args["seq_len"], args["batch"], d, **rest) / GiB))
    out["gb"] = (
        "GB (10**9 bytes) instead of GiB (2**30 bytes): divide the bytes by 2**30",
        float(right / 10**9),
    )
    out["mib"] = ("MiB, not GiB: divide the bytes by 2**30", float(right / 2**20))
    out["bytes"] = ("bytes, not GiB: divide the bytes by 2**30", float(right))
    out["bits"] = ("bits instead of bytes: fp16 is 2 bytes per element, not 16", float(right * 8 / GiB))
    want = float(right / GiB)
    for digits in range(7):
        out[f"round{digits}"] = (
            f"rounded to {digits} decimals: the docstring asks for the float, not rounded",
            round(want, digits),
        )
    out["floor"] = ("rounded down to whole GiB: return the float, not rounded", float(math.floor(want)))
    out["ceil"] = ("rounded up to whole GiB: return the float, not rounded", float(math.ceil(want)))
    return {k: v for k, v in out.items() if not _close(v[1], want)}


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1 / GiB)  # 1 byte: a sub-byte total may be rounded up


KV_GIB = Exercise(
    name="kv_gib",
    required=("seq_len",),
    unit="GiB",
    expected=_kv_gib_expected,
    slips=_kv_gib_slips,
    same=lambda got, v: _close(got, float(v)),
    probes=(
        _kv_gib_case(ODD, 1001, 7, "fp32"),
        _kv_gib_case(ODD, 3001, 5, "int4"),
        _kv_gib_case(MODEL_CONFIGS["Gemma-7B"], 777, 3, torch.bfloat16),
        _kv_gib_case(MODEL_CONFIGS["Qwen2-7B"], 12345, 11, torch.int8),
    ),
    formula=(
        "GiB = 2 (keys and values) * num_layers * num_kv_heads * head_dim * seq_len * batch * "
        "bytes_per_element(dtype) / 2**30"
    ),
    returns="float",
)


@graded("kv_gib", *KV_GIB_REFERENCES)
def kv_gib_visible(fn: Callable[..., Any]) -> None:
    """The worked example (MHA and GQA-8), Llama-2-70B's 100 requests, a batch in int8."""
    mha = hand_made(48, 96, 96, 128, 12288, 175.0, "the worked example, 48 layers, 96 heads of 128 (MHA)")
    gqa = hand_made(48, 96, 8, 128, 12288, 175.0, "the worked example with GQA-8 (8 KV heads of 128)")
    _run(
        fn,
        KV_GIB,
        [
            _kv_gib_case(mha, 2048),  # 4.5 GiB
            _kv_gib_case(gqa, 2048),  # 0.375 GiB
            _kv_gib_case(MODEL_CONFIGS["Llama-2-70B"], 2048, 100, "fp16"),
            _kv_gib_case(MODEL_CONFIGS["Llama-3-8B"], 1000, 3, "int8"),
        ],
    )
    print("visible tests passed")


@graded("kv_gib", *KV_GIB_REFERENCES)
def kv_gib_hidden(fn: Callable[..., Any]) -> None:
    """Every model and dtype spelling, the KV width where it differs from the model width, loads past the
    visible ones, the defaults and keywords, the type, nothing kept between calls."""
    first = _kv_gib_case(MODEL_CONFIGS["Llama-2-70B"], 3000, 7, "bf16")
    cases = [
        first,
        _kv_gib_case(ODD, 1001, 7, "fp16"),
        _kv_gib_case(MODEL_CONFIGS["Gemma-7B"], 777, 3, "fp16"),
    ]
    cases += [_kv_gib_case(ODD, 1001, 7, dtype) for dtype in DTYPES]
    for i, shape in enumerate(MODEL_CONFIGS.values()):
        cases.append(_kv_gib_case(shape, shape.max_seq_len, 3, DTYPES[i % len(DTYPES)]))
        cases.append(_kv_gib_case(shape, 1000 + i, 1 + i, "bf16"))
    cases += [
        _kv_gib_case(MODEL_CONFIGS["Llama-3.1-405B"], 131072, 1000, "fp16"),  # 128k tokens, batch 1000
        _kv_gib_case(MODEL_CONFIGS["Llama-2-70B"], 131072, 1024, "int4"),
        _kv_gib_case(MODEL_CONFIGS["Mixtral-8x7B"], 32768, 4096, torch.float8_e4m3fn),
        _kv_gib_case(MODEL_CONFIGS["GPT-2 124M"], 1, 1, "fp32"),  # one token
        _kv_gib_case(MODEL_CONFIGS["Llama-2-7B"], 0, 5, "fp16"),  # no tokens: 0.0
        _kv_gib_case(hand_made(1, 1, 1, 1), 1, 1, "int8"),  # one byte... a float still
        _kv_gib_case(MODEL_CONFIGS["Llama-2-7B"], 4096, how="defaults"),  # exactly 2 GiB: a float still
        _kv_gib_case(MODEL_CONFIGS["Qwen2-7B"], 4097, how="defaults"),
        _kv_gib_case(MODEL_CONFIGS["Mistral-7B"], 8191, 13, torch.bfloat16, how="keywords"),
    ]
    _run(fn, KV_GIB, cases)
    _same_name(fn, KV_GIB, lambda shape: _kv_gib_case(shape, 100, 2, "fp16"))
    _again(fn, KV_GIB, first)
    print("hidden tests passed")


# ---------------------------------------------------------------------------------------------------------
# gpus_needed
# ---------------------------------------------------------------------------------------------------------


def _gpus_case(
    shape: ModelShape,
    n_requests: int,
    seq_len: int,
    gpu_gib: float = 80.0,
    utilization: float = 0.9,
    weight_dtype: Any = "bf16",
    kv_dtype: Any = "bf16",
    how: str = "positional",
    strict: bool = False,
) -> Case:
    args = {
        "n_requests": n_requests,
        "seq_len": seq_len,
        "gpu_gib": gpu_gib,
        "utilization": utilization,
        "weight_dtype": weight_dtype,
        "kv_dtype": kv_dtype,
    }
    return Case(shape, args, how, strict)


def _gpus_ratio(
    case: Case,
    *,
    factor: int = 2,
    width: int | None = None,
    kv_bpe: Fraction | int | None = None,
    weight_bpe: Fraction | int | None = None,
    swap: bool = False,
    unit: int = GiB,
    util_power: int = 1,
    per_request: bool = False,
    params_scale: int = 10**9,
    n_kv: int | None = None,
    weights: bool = True,
    kv: bool = True,
) -> Fraction:
    """(weights + KV) / usable, exactly, with one slip at a time."""
    s, a = case.shape, case.args
    n = a["n_requests"]
    wd, kd = (a["kv_dtype"], a["weight_dtype"]) if swap else (a["weight_dtype"], a["kv_dtype"])
    w = Fraction(s.params_b) * params_scale * (_bpe(wd) if weight_bpe is None else Fraction(weight_bpe))
    if per_request:
        w *= n
    k = _kv(s, a["seq_len"], n if n_kv is None else n_kv, kd, factor=factor, width=width, bpe=kv_bpe)
    usable = Fraction(a["utilization"]) ** util_power * Fraction(a["gpu_gib"]) * unit
    return ((w if weights else 0) + (k if kv else 0)) / usable


def _gpus_expected(case: Case) -> frozenset[int]:
    """The right count; near a whole number (relative 1e-9) both neighbours, unless every quantity of the
    case is exact in floating point (`strict`), where the float computation is exact too."""
    r = _gpus_ratio(case)
    if case.strict:
        return frozenset({max(1, math.ceil(r))})
    return frozenset(max(1, math.ceil(r * (1 + e))) for e in (Fraction(-1, 10**9), 0, Fraction(1, 10**9)))


def _gpus_slips(case: Case) -> dict[str, tuple[str, int]]:
    s, a = case.shape, case.args
    n, wd, kd = a["n_requests"], a["weight_dtype"], a["kv_dtype"]
    ratios: dict[str, tuple[str, Fraction]] = {}
    for key, (message, change) in _dtype_slips(kd, "kv_dtype").items():
        ratios["kv_" + key] = (message, _gpus_ratio(case, kv_bpe=change["bpe"]))
    for key, (message, change) in _dtype_slips(wd, "weight_dtype").items():
        ratios["w_" + key] = (message, _gpus_ratio(case, weight_bpe=change["bpe"]))
    ratios["swap"] = (
        f"weight_dtype ({wd!r}) and kv_dtype ({kd!r}) swapped: the weights are in weight_dtype, the cache "
        "in kv_dtype",
        _gpus_ratio(case, swap=True),
    )
    ratios["no_two"] = (
        "the factor 2 is missing from the KV cache: every layer caches keys AND values",
        _gpus_ratio(case, factor=1),
    )
    for key, (message, change) in _width_slips(s).items():
        ratios[key] = (message, _gpus_ratio(case, **change))
    ratios["gb"] = (
        "GB (10**9 bytes) instead of GiB for the GPU: its usable memory is utilization * gpu_gib * 2**30 "
        "bytes",
        _gpus_ratio(case, unit=10**9),
    )
    ratios["per_request"] = (
        f"the weights counted once per request: the {n} requests share one copy of the weights, counted once",
        _gpus_ratio(case, per_request=True),
    )
    ratios["util_ignored"] = (
        f"utilization is ignored: only utilization * gpu_gib ({a['utilization']!r} * {a['gpu_gib']!r} GiB) "
        "of each GPU is usable",
        _gpus_ratio(case, util_power=0),
    )
    ratios["util_twice"] = (
        "utilization is applied twice: usable memory is utilization * gpu_gib * 2**30 bytes, once",
        _gpus_ratio(case, util_power=2),
    )
    ratios["params_raw"] = (
        "params_b is not multiplied by 10**9: the model has params_b billion parameters, params_b * 10**9",
        _gpus_ratio(case, params_scale=1),
    )
    ratios["params_gib"] = (
        "params_b multiplied by 2**30: a billion parameters is 10**9 of them (GiB is a unit of bytes)",
        _gpus_ratio(case, params_scale=GiB),
    )
    ratios["n_ignored"] = (
        f"n_requests is ignored: each of the {n} requests holds its own KV cache",
        _gpus_ratio(case, n_kv=1),
    )
    ratios["no_weights"] = (
        "the weights are left out: they take memory too, once",
        _gpus_ratio(case, weights=False),
    )
    ratios["no_kv"] = (
        "the KV cache is left out: every request holds its keys and values",
        _gpus_ratio(case, kv=False),
    )
    out = {key: (message, max(1, math.ceil(r))) for key, (message, r) in ratios.items()}
    r = _gpus_ratio(case)
    out["floor"] = (
        "rounded down: a fraction of a GPU still takes a whole GPU, round up with math.ceil",
        max(1, math.floor(r)),
    )
    out["round"] = (
        "round() instead of rounding up: a fraction of a GPU still takes a whole GPU, math.ceil",
        max(1, round(r)),
    )
    out["int_plus_one"] = (
        "int(x) + 1 instead of math.ceil(x): a load that fills exactly k GPUs needs k of them, not k + 1",
        math.floor(r) + 1,
    )
    out["zero"] = (
        "0 GPUs for a load of no bytes: the docstring promises an int >= 1 (max(1, ...))",
        math.ceil(r),
    )
    out["round_half"] = (
        "round(x + 0.5) as a ceiling: round() sends halves to the even neighbour, so a load that fills an "
        "odd number of GPUs exactly gets one too many; use math.ceil",
        max(1, round(r + Fraction(1, 2))),
    )
    if 0 < r - math.floor(r) < Fraction(1, 100):
        out["margin"] = (
            f"the ratio rounded (or a margin for float noise subtracted) before the ceiling: the load needs "
            f"{float(r):.7f} GPUs, and even one token past {math.floor(r)} full GPUs needs one more",
            max(1, math.floor(r)),
        )
    want = _gpus_expected(case)
    return {k: v for k, v in out.items() if v[1] not in want}


GPUS = Exercise(
    name="gpus_needed",
    required=("n_requests", "seq_len"),
    unit="GPUs",
    expected=_gpus_expected,
    slips=_gpus_slips,
    same=lambda got, v: got == v,
    probes=(
        _gpus_case(ODD, 257, 3001, 1.5, 0.7, "int8", "fp16"),
        _gpus_case(MODEL_CONFIGS["Llama-2-70B"], 1000, 4096, 8.0, 0.8, "fp32", "int4"),
        _gpus_case(ODD, 1000, 4096, 0.25, 0.9, "int8", "fp16"),  # ~65 GPUs: slips of a few % differ
        _gpus_case(MODEL_CONFIGS["Gemma-7B"], 0, 2048, 1.0, 0.5, "bf16", "fp32"),
        _gpus_case(NO_WEIGHTS, 1024, 4096, 1.0, 1.0, "fp16", "fp16", strict=True),  # exactly 8 GPUs, full
        _gpus_case(NO_WEIGHTS, 0, 4096, 1.0, 1.0, "fp16", "fp16", strict=True),  # nothing at all: still 1 GPU
        _gpus_case(MODEL_CONFIGS["Qwen2-7B"], 3, 100_000, 2.0, 0.95, "int4", "fp8"),
    ),
    formula=(
        "GPUs = max(1, ceil((params_b * 10**9 * bytes_per_element(weight_dtype) + KV bytes of n_requests "
        "requests of seq_len tokens in kv_dtype) / (utilization * gpu_gib * 2**30)))"
    ),
    returns="int",
)


@graded("gpus_needed", *GPUS_REFERENCES)
def gpus_needed_visible(fn: Callable[..., Any]) -> None:
    """Llama-2-70B's 100 requests of 2,048 tokens (3 GPUs), a smaller GPU, an fp8 cache."""
    llama70 = MODEL_CONFIGS["Llama-2-70B"]
    _run(
        fn,
        GPUS,
        [
            _gpus_case(llama70, 100, 2048),
            _gpus_case(MODEL_CONFIGS["Llama-3-8B"], 64, 8192, 24.0, 0.9, "bf16", "bf16"),
            _gpus_case(llama70, 400, 4096, 80.0, 0.9, "bf16", "fp8"),
        ],
    )
    print("visible tests passed")


@graded("gpus_needed", *GPUS_REFERENCES)
def gpus_needed_hidden(fn: Callable[..., Any]) -> None:
    """Every model at several loads and GPU sizes, each dtype spelling for the weights and for the cache
    apart, empty loads, a load that fills GPUs exactly, loads past the visible ones, the defaults and
    keywords, the type, nothing kept between calls."""
    llama70 = MODEL_CONFIGS["Llama-2-70B"]
    first = _gpus_case(ODD, 257, 3001, 1.5, 0.7, "int8", "fp16")
    cases = [
        first,
        _gpus_case(llama70, 0, 2048),  # the weights alone need 2 GPUs
        _gpus_case(NO_WEIGHTS, 0, 4096, 1.0, 1.0, "fp16", "fp16", strict=True),  # nothing at all: still 1
        _gpus_case(NO_WEIGHTS, 7, 0, 1.0, 1.0, "fp16", "fp16", strict=True),
        _gpus_case(NO_WEIGHTS, 1024, 4096, 1.0, 1.0, "fp16", "fp16", strict=True),  # exactly 8 GPUs, full
        _gpus_case(NO_WEIGHTS, 2048, 4096, 2.0, 0.5, "fp16", "fp16", strict=True),  # exactly 16
        _gpus_case(NO_WEIGHTS, 1025, 4096, 1.0, 1.0, "fp16", "fp16", strict=True),  # 8 and a bit: 9
        _gpus_case(NO_WEIGHTS, 1152, 4096, 1.0, 1.0, "fp16", "fp16", strict=True),  # exactly 9 (odd)
        _gpus_case(NO_WEIGHTS, 384, 4096, 1.0, 1.0, "fp16", "fp16", strict=True),  # exactly 3
        # 8 GiB and one token (2 KiB): 9 GPUs, so a ratio rounded to a few decimals or a "float noise"
        # margin before the ceiling shows
        _gpus_case(NO_WEIGHTS, 1, 4 * 2**20 + 1, 1.0, 1.0, "fp16", "fp16", strict=True),
        _gpus_case(ODD, 1000, 4096, 0.25, 0.9, "int8", "fp16"),
        _gpus_case(MODEL_CONFIGS["Gemma-7B"], 0, 2048, 1.0, 0.5, "bf16", "fp32"),
        _gpus_case(MODEL_CONFIGS["Qwen2-7B"], 3, 100_000, 2.0, 0.95, "int4", "fp8"),
        _gpus_case(llama70, 1000, 4096, 8.0, 0.8, "fp32", "int4"),
    ]
    # each dtype spelling for the weights, then for the cache, on loads whose count tells them apart
    for dtype in DTYPES:
        cases.append(_gpus_case(MODEL_CONFIGS["Llama-2-13B"], 50, 4096, 4.0, 0.9, dtype, "bf16"))
        cases.append(_gpus_case(MODEL_CONFIGS["Llama-2-13B"], 50, 4096, 4.0, 0.9, "bf16", dtype))
    gpus = ((80.0, 0.9), (24, 0.9), (40.0, 0.95), (141.0, 0.9), (192.0, 1), (16.0, 0.5))
    for i, shape in enumerate(MODEL_CONFIGS.values()):
        gpu_gib, utilization = gpus[i % len(gpus)]
        cases.append(_gpus_case(shape, 1 + 13 * i, shape.max_seq_len, gpu_gib, utilization))
        cases.append(_gpus_case(shape, 1000 + i, 2000 + i, 8.0, 0.85, "int8", "fp16"))
    cases += [
        # 128k tokens, 1000 requests, the defaults: 886 GPUs, so a default off by 0.2% changes the count
        _gpus_case(MODEL_CONFIGS["Llama-3.1-405B"], 1000, 131072, how="defaults"),
        _gpus_case(MODEL_CONFIGS["Llama-3.1-405B"], 1, 131072, 141.0, 0.9, "fp8", "fp8"),
        _gpus_case(MODEL_CONFIGS["Llama-3-70B"], 4096, 8192, 80.0, 0.9, "bf16", "int4"),
        _gpus_case(MODEL_CONFIGS["GPT-2 124M"], 1, 1, 80.0, 0.9, "fp32", "fp32"),
        _gpus_case(MODEL_CONFIGS["Mixtral-8x7B"], 300, 32768, how="defaults"),
        _gpus_case(
            MODEL_CONFIGS["Mistral-7B"], 2000, 8192, 48.0, 0.8, torch.bfloat16, torch.float16, how="keywords"
        ),
    ]
    _run(fn, GPUS, cases)
    _same_name(fn, GPUS, lambda shape: _gpus_case(shape, 3000, 256, 0.5, 0.9, "fp16", "fp16"))
    _again(fn, GPUS, first)
    print("hidden tests passed")


# ---------------------------------------------------------------------------------------------------------
# prefix_cached_bytes
# ---------------------------------------------------------------------------------------------------------


def _prefix_case(
    shape: ModelShape,
    prefix_len: int,
    suffix_len: int,
    n_users: int,
    block_size: int = 16,
    dtype: Any = "fp16",
    how: str = "positional",
) -> Case:
    args = {
        "prefix_len": prefix_len,
        "suffix_len": suffix_len,
        "n_users": n_users,
        "block_size": block_size,
        "dtype": dtype,
    }
    return Case(shape, args, how)


def _ceil(a: int | Fraction, b: int) -> int:
    return math.ceil(Fraction(a) / b)


def _prefix_blocks(P: int, S: int, n: int, bs: int, rule: str = "right") -> Fraction | int:
    """Blocks held (a Fraction where a slip counts tokens instead of whole blocks)."""
    if rule == "right":
        return 0 if n == 0 else P // bs + n * _ceil(P % bs + S, bs)
    if rule == "no_zero_rule":  # the right count, without "no users, no bytes"
        return P // bs + n * _ceil(P % bs + S, bs)
    if rule == "per_user":
        return n * _ceil(P + S, bs)
    if rule == "per_user_apart":
        return n * (_ceil(P, bs) + _ceil(S, bs))
    if rule == "own_once":
        return 0 if n == 0 else P // bs + _ceil(P % bs + S, bs)
    if rule == "partial_shared":
        return 0 if n == 0 else _ceil(P, bs) + n * _ceil(S, bs)
    if rule == "apart":
        return 0 if n == 0 else P // bs + n * (_ceil(P % bs, bs) + _ceil(S, bs))
    if rule == "partial_dropped":
        return 0 if n == 0 else P // bs + n * _ceil(S, bs)
    if rule == "floor":
        return 0 if n == 0 else P // bs + n * ((P % bs + S) // bs)
    if rule == "round":
        return 0 if n == 0 else P // bs + n * round(Fraction(P % bs + S, bs))
    if rule == "tokens_own":
        return 0 if n == 0 else P // bs + n * Fraction(P % bs + S, bs)
    if rule == "tokens":
        return 0 if n == 0 else Fraction(P + n * S, bs)
    raise ValueError(rule)


def _prefix_expected(case: Case) -> int:
    from kvlib.sizing import prefix_cached_bytes

    return prefix_cached_bytes(case.shape, *case.args.values())


def _prefix_slips(case: Case) -> dict[str, tuple[str, Fraction]]:
    s, a = case.shape, case.args
    P, S, n, bs, d = a["prefix_len"], a["suffix_len"], a["n_users"], a["block_size"], a["dtype"]
    per_token = _kv(s, 1, 1, d)
    full = P // bs
    rules = {
        "per_user": (
            f"the prefix stored per user: with prefix caching its {full} full block(s) of {bs} tokens are "
            f"stored once, shared by all {n} users",
            "per_user",
        ),
        "per_user_apart": (
            f"the prefix stored per user (and rounded up apart from the suffix): its {full} full block(s) "
            f"are stored once, shared by all {n} users",
            "per_user_apart",
        ),
        "own_once": (
            f"each user's own blocks counted once: every one of the {n} users holds its own blocks for the "
            "prefix's partial block and its suffix",
            "own_once",
        ),
        "partial_shared": (
            f"the prefix's partial last block shared: only full blocks are shared ({P} tokens make {full} "
            f"full block(s) of {bs}); the partial one is each user's own, packed with the user's suffix",
            "partial_shared",
        ),
        "apart": (
            "the prefix's partial block and the suffix rounded up separately: they are packed together, "
            "ceil((prefix_len % block_size + suffix_len) / block_size) blocks per user",
            "apart",
        ),
        "partial_dropped": (
            f"the prefix's partial block is forgotten: its {P % bs} token(s) are held by each user, together "
            "with the suffix",
            "partial_dropped",
        ),
        "floor": (
            "each user's blocks rounded down: a partly filled block is a whole block, round up (ceil)",
            "floor",
        ),
        "round": (
            "each user's blocks rounded with round(): a partly filled block is a whole block, round up "
            "(ceil)",
            "round",
        ),
        "tokens_own": (
            "each user's blocks not rounded up: memory comes in whole blocks of block_size tokens, full or "
            "not",
            "tokens_own",
        ),
        "tokens": (
            "tokens counted, not blocks: memory comes in whole blocks of block_size tokens, full or not, and "
            "only the prefix's full blocks are shared",
            "tokens",
        ),
        "no_zero_rule": (
            "with n_users = 0 the shared prefix is still counted: no users, no bytes (return 0)",
            "no_zero_rule",
        ),
    }
    right_blocks = _prefix_blocks(P, S, n, bs)
    out: dict[str, tuple[str, Fraction]] = {}
    for key, (message, rule) in rules.items():
        out[key] = (message, _prefix_blocks(P, S, n, bs, rule) * bs * per_token)
    if bs != 16:
        out["bs16"] = (
            f"block_size is ignored (16 used): blocks here hold {_plural(bs, 'token')}",
            _prefix_blocks(P, S, n, 16) * 16 * per_token,
        )
    formula = {
        **_dtype_slips(d),
        "no_two": ("the factor 2 is missing: every layer caches keys AND values", {"factor": 1}),
        **_width_slips(s),
    }
    for key, (message, change) in formula.items():
        out[key] = (message, right_blocks * bs * _kv(s, 1, 1, d, **change))
    out["blocks"] = (
        "a number of blocks, not bytes: multiply by the bytes of a block, block_size tokens",
        Fraction(right_blocks),
    )
    out["gib"] = ("GiB, not bytes: the docstring asks for bytes", right_blocks * bs * per_token / GiB)
    want = _prefix_expected(case)
    return {k: v for k, v in out.items() if v[1] != want}


PREFIX = Exercise(
    name="prefix_cached_bytes",
    required=("prefix_len", "suffix_len", "n_users"),
    unit="bytes",
    expected=_prefix_expected,
    slips=_prefix_slips,
    same=lambda got, v: got == v,  # a byte count, exactly (every hidden answer is below 2**53)
    probes=(
        _prefix_case(ODD, 1000, 37, 7, 16, "fp32"),
        _prefix_case(ODD, 5, 3, 3, 16, "int4"),
        _prefix_case(ODD, 50, 30, 4, 16, "fp16"),
        _prefix_case(ODD, 64, 48, 5, 16, "int8"),
        _prefix_case(ODD, 77, 50, 0, 32, "bf16"),
        _prefix_case(MODEL_CONFIGS["Gemma-7B"], 1000, 200, 9, 7, "fp16"),
    ),
    formula=(
        "bytes = (prefix_len // block_size shared blocks + n_users * ceil((prefix_len % block_size + "
        "suffix_len) / block_size) own blocks) * block_size * (bytes of one token's keys and values)"
    ),
    returns="int",
)


@graded("prefix_cached_bytes", *PREFIX_REFERENCES)
def prefix_cached_bytes_visible(fn: Callable[..., Any]) -> None:
    """The notebook's 1,000 users; a prompt with a partial block; a prompt of whole blocks and no suffix."""
    _run(
        fn,
        PREFIX,
        [
            _prefix_case(MODEL_CONFIGS["Llama-3-8B"], 1000, 200, 1000),
            _prefix_case(MODEL_CONFIGS["Llama-2-7B"], 50, 37, 4, 16, "fp16"),  # 2 + 37 tokens: 3 own blocks
            _prefix_case(MODEL_CONFIGS["Llama-2-70B"], 64, 0, 3, 16, "bf16"),
        ],
    )
    print("visible tests passed")


@graded("prefix_cached_bytes", *PREFIX_REFERENCES)
def prefix_cached_bytes_hidden(fn: Callable[..., Any]) -> None:
    """No users and one, blocks of 1 and 256, a prompt shorter than a block or of whole blocks, a partial
    block that spills the suffix into another block, every model and dtype spelling, 128k-token prompts and
    100,000 users, the defaults and keywords, the type, nothing kept between calls."""
    llama8, llama70 = MODEL_CONFIGS["Llama-3-8B"], MODEL_CONFIGS["Llama-2-70B"]
    first = _prefix_case(ODD, 1000, 37, 7, 16, "fp32")
    cases = [
        first,
        _prefix_case(ODD, 50, 30, 4, 16, "fp16"),  # partial prefix block + suffix spill into 2 own blocks
        _prefix_case(ODD, 40, 8, 6, 16, "fp16"),  # partial block + suffix fill exactly one own block
        _prefix_case(ODD, 40, 16, 6, 16, "fp16"),  # suffix of whole blocks after a partial one
        _prefix_case(ODD, 5, 3, 3, 16, "int4"),  # the prompt is shorter than a block: nothing shared
        _prefix_case(ODD, 64, 48, 5, 16, "int8"),  # a prompt of whole blocks
        _prefix_case(ODD, 64, 0, 5, 16, "int8"),  # ... and no suffix: users hold nothing of their own
        _prefix_case(ODD, 40, 0, 6, 16, "fp16"),  # no suffix, a partial block: still each user's own
        _prefix_case(ODD, 0, 33, 5, 16, "fp16"),  # no prompt
        _prefix_case(ODD, 0, 0, 5, 16, "fp16"),  # nothing at all
        _prefix_case(ODD, 77, 50, 0, 32, "bf16"),  # no users, no bytes
        _prefix_case(llama70, 4096, 0, 0),
        _prefix_case(ODD, 77, 50, 1, 32, "bf16"),  # one user
        _prefix_case(llama8, 1000, 200, 1, 16),
        _prefix_case(llama8, 1000, 200, 1000, 1),  # blocks of one token
        _prefix_case(llama8, 1000, 200, 1000, 256),  # blocks of 256
        _prefix_case(llama8, 999, 1, 1000, 256),
        _prefix_case(llama8, 1000, 200, 9, 7),
        _prefix_case(MODEL_CONFIGS["Gemma-7B"], 1000, 200, 9, 7, "fp16"),
        _prefix_case(MODEL_CONFIGS["Llama-3.1-405B"], 131072, 4096, 1000, 16, "bf16"),  # a 128k-token prompt
        _prefix_case(MODEL_CONFIGS["Llama-3.1-405B"], 131071, 4097, 100_000, 256, "fp8"),  # 100,000 users
        _prefix_case(llama70, 131075, 3, 100_000, 1, "int4"),
    ]
    cases += [_prefix_case(ODD, 1000, 37, 7, 16, dtype) for dtype in DTYPES]
    for i, shape in enumerate(MODEL_CONFIGS.values()):
        cases.append(
            _prefix_case(
                shape, 500 + 37 * i, 100 + i, 3 + i, (1, 16, 32, 256)[i % 4], DTYPES[i % len(DTYPES)]
            )
        )
    cases += [
        _prefix_case(MODEL_CONFIGS["Mistral-7B"], 2000, 300, 64, how="defaults"),
        _prefix_case(MODEL_CONFIGS["Qwen2-7B"], 3001, 299, 17, 32, torch.bfloat16, how="keywords"),
    ]
    _run(fn, PREFIX, cases)
    _same_name(fn, PREFIX, lambda shape: _prefix_case(shape, 100, 20, 3, 16, "fp16"))
    _again(fn, PREFIX, first)
    print("hidden tests passed")
