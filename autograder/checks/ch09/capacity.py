"""Exercises 4 and 5 of chapter 09: `quantized_kv_bytes` (KV bytes with group-wise quantization) and
`max_requests_per_gpu` (requests one GPU of a tensor-parallel group holds).

Both are graded by value against the docstrings' arithmetic, recomputed here exactly (fractions), over
every shape of `MODEL_CONFIGS` and hand-made ones, loads past the visible ones, every dtype spelling,
the defaults and keywords. Wrong answers are diagnosed first by recomputing the usual slips and naming
the one matched:

- quantized_kv_bytes: scales forgotten, zero-points forgotten, one scale per vector instead of per group,
  group_size taken as the number of groups, bits taken as bytes, codes one per byte, the factor 2 of K
  and V, scale_dtype ignored, packed codes not rounded up to whole bytes, query heads for KV heads, the
  batch ignored; ValueError for bits not in {2, 4, 8} and a group_size that does not divide head_dim;
  an int result.
- max_requests_per_gpu: KV heads floored to 0 past tp = num_kv_heads (ZeroDivisionError or inf), weights
  not divided by tp, the whole KV cache divided by tp (no copied head), ceil instead of floor, a negative
  count when the weights do not fit, GB for GiB, utilization ignored or applied after the weights,
  the count multiplied by tp, query heads for KV heads, the dtypes mixed up; ValueError for every split
  the docstring rules out; an int result.

Where the exact quotient of `max_requests_per_gpu` lies within 1e-9 of a whole number, both neighbours are
accepted: float rounding in a correct formula written in another order may land on either side.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import torch

from kvlib.memory import MODEL_CONFIGS, ModelShape, bytes_per_element

from ..common import CheckFailed, as_int, as_number, expect_value_error
from ..delegation import graded
from .shapes import hand_made, shape_label

Q_NAME = "quantized_kv_bytes"
R_NAME = "max_requests_per_gpu"
Q_REFERENCES = ("kvlib.sizing.quantized_kv_bytes",)
# kvlib.memory's split rule and per-GPU bytes are chapter 08's exercise: they hand in most of this one.
R_REFERENCES = (
    "kvlib.sizing.max_requests_per_gpu",
    "kvlib.memory.kv_heads_per_gpu",
    "kvlib.memory.kv_bytes_per_gpu",
)

GiB = 2**30
# Every spelling of a dtype the chapter shows (bytes_per_element accepts names and torch dtypes).
SCALE_DTYPES = ("fp16", torch.float16, "float16", "bf16", torch.bfloat16, "fp8", "fp32", torch.float32,
                "bfloat16", "float32", "half")  # fmt: skip
WEIGHT_DTYPES = ("bf16", torch.bfloat16, "fp16", torch.float16, "fp8", "int8", torch.int8, "int4", "fp32")
KV_DTYPES = ("bf16", torch.bfloat16, "fp16", torch.float16, "fp8", "int8", torch.int8, "int4", torch.float32)
# The other names bytes_per_element accepts, each tried for the weights and for the cache apart.
MORE_DTYPE_NAMES = ("float16", "bfloat16", "float32", "half", "int2", "float8_e4m3fn")
# tp values past 16: some split a model of MODEL_CONFIGS (25, 28, 40, 64, 128 query heads), some none.
LARGE_TPS = (20, 24, 25, 28, 32, 40, 48, 64, 96, 128, 256)
NEAR_TIE = 1e-9


def _bytes(dtype: Any) -> Fraction:
    return Fraction(bytes_per_element(dtype))


def _call(
    fn: Callable[..., Any],
    name: str,
    label: str,
    args: tuple,
    kwargs: dict,
    valid: str,
    hint: Callable[[Exception], str] = lambda exc: "",
) -> Any:
    """Call the learner's function on valid arguments (`valid` says why they are); its exceptions become a
    message naming the call, and a changed shape fails."""
    shape = args[0]
    before = dataclasses.astuple(shape)
    try:
        got = fn(*args, **kwargs)
    except NotImplementedError:
        raise CheckFailed(f"{name} is not implemented yet (it raised NotImplementedError)") from None
    except CheckFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - any learner error becomes feedback
        but = f", but {valid}" if isinstance(exc, ValueError) else ""
        raise CheckFailed(f"{label} raised {type(exc).__name__}: {exc}{but}{hint(exc)}") from None
    if dataclasses.astuple(shape) != before:
        raise CheckFailed(f"{label} changed the shape it was given: read the ModelShape, never write to it")
    return got


def _dtype_hint(*dtypes: Any) -> Callable[[Exception], str]:
    """A hint for an error raised on a dtype given by name ('fp16'), where a torch.dtype was expected."""

    def hint(exc: Exception) -> str:
        if any(isinstance(d, str) for d in dtypes) and isinstance(exc, (KeyError, TypeError, AttributeError)):
            return (
                "; a dtype may be a name such as 'fp16' or 'int8', not only a torch.dtype: "
                "bytes_per_element(dtype) accepts both"
            )
        return ""

    return hint


def _compare(
    label: str,
    got: Any,
    accepted: set[int],
    variants: dict[str, Any],
    otherwise: str,
    want: int | None = None,
) -> int:
    """`got` must be an int in `accepted`; else name the slip in `variants` it matches, or the formula."""
    want = min(accepted) if want is None else want
    if isinstance(got, numbers.Integral) and not isinstance(got, bool) and int(got) in accepted:
        return int(got)
    value = as_number(got, f"{label}'s result")
    if value in accepted:  # the right number, but not an int
        as_int(got, f"{label}'s result")
    mistakes = [m for m, v in variants.items() if math.isclose(value, float(v), rel_tol=1e-12, abs_tol=1e-9)]
    if mistakes:  # two slips may give one number: name the likeliest two
        raise CheckFailed(f"{label} returned {got!r}, expected {want}: " + "; or ".join(mistakes[:2]))
    raise CheckFailed(f"{label} returned {got!r}, expected {want} = {otherwise}")


def _again(first: Callable[[], Any], what: str) -> None:
    """Re-run an earlier case after many other calls: a changed answer reveals state kept between calls."""
    try:
        first()
    except CheckFailed as exc:
        raise CheckFailed(
            f"{exc} (the same call passed earlier, before other calls: {what} must not keep anything between "
            "calls, such as a running total, a module-level variable or a memo keyed by the model's name)"
        ) from None


# Shapes named alike: TWINS[1] differs from TWINS[0] in its layers, KV heads and parameters, TWINS[2] in its
# KV heads and head_dim only (a memo keyed by the name and the layer count shows too).
TWINS = (
    ModelShape("twin", 2, 8, 8, 64, 512, 256, 0.1, "grader"),
    ModelShape("twin", 3, 8, 2, 64, 512, 256, 0.2, "grader"),
    ModelShape("twin", 2, 8, 2, 32, 512, 256, 0.1, "grader"),
)
TWIN_IS = (
    "2 layers, 8 KV heads of 64, 0.1B parameters",
    "3 layers, 2 KV heads of 64, 0.2B parameters",
    "2 layers, 2 KV heads of 32, 0.1B parameters",
)


def _same_name(name: str, second: Callable[[], Any], first_answer: int, which: int = 1) -> None:
    """Call `second` (TWINS[which]'s case) and fail if it returns TWINS[0]'s answer: a memo keyed by the name
    (or by the name and some of the sizes)."""
    try:
        got = second()
    except Exception:  # noqa: BLE001 - the value check that follows reports it
        return
    if got == first_answer:
        raise CheckFailed(
            f"{name} returned for another shape named 'twin' ({TWIN_IS[which]}) the answer of an earlier "
            f"call with a shape of that name ({TWIN_IS[0]}): the result must come from this call's shape, "
            "not from a memo keyed by the model's name (or by its name and some of its sizes)"
        )


# --- quantized_kv_bytes -----------------------------------------------------------------------------------


def _q_label(shape: ModelShape, seq_len: int, bits: Any, group: Any, batch: int, scale_dtype: Any) -> str:
    return (
        f"{Q_NAME}({shape_label(shape)}, seq_len={seq_len}, bits={bits}, group_size={group}, batch={batch}, "
        f"scale_dtype={scale_dtype!r})"
    )


def _q_total(
    shape: ModelShape,
    seq_len: int,
    batch: int,
    codes: Fraction | int,
    scales: Fraction | int,
    kv: int = 2,
    heads: int | None = None,
) -> Fraction:
    heads = shape.num_kv_heads if heads is None else heads
    return Fraction(kv * shape.num_layers * heads * seq_len * batch) * (codes + scales)


def quantized_expected(
    shape: ModelShape, seq_len: int, bits: int, group: int, batch: int, scale_dtype: Any
) -> int:
    """The docstring's bytes: per vector ceil(head_dim * bits / 8) code bytes + 2 numbers per group."""
    codes = -(-shape.head_dim * bits // 8)
    scales = 2 * (shape.head_dim // group) * _bytes(scale_dtype)
    total = _q_total(shape, seq_len, batch, codes, scales)
    assert total.denominator == 1, "whole-byte scale dtypes only"
    return int(total)


def quantized_variants(
    shape: ModelShape, seq_len: int, bits: int, group: int, batch: int, scale_dtype: Any
) -> dict[str, Fraction]:
    """The usual slips, message -> bytes, most specific first; those equal to the right answer dropped."""
    d, sb = shape.head_dim, _bytes(scale_dtype)
    groups = d // group
    codes = -(-d * bits // 8)
    scales = 2 * groups * sb
    out: dict[str, Fraction] = {}

    def add(
        message: str, codes_: Fraction | int = codes, scales_: Fraction | int = scales, **kw: Any
    ) -> None:
        out.setdefault(
            message,
            _q_total(shape, kw.pop("seq_len", seq_len), kw.pop("batch", batch), codes_, scales_, **kw),
        )

    add(
        "the scales and zero-points are forgotten: every group of group_size channels also stores one scale "
        f"and one zero-point of scale_dtype ({sb} bytes each)",
        scales_=0,
    )
    add(
        "the zero-points are forgotten: every group stores a scale AND a zero-point, 2 numbers of "
        "scale_dtype per group",
        scales_=groups * sb,
    )
    add(
        f"one scale and one zero-point per vector instead of per group: a vector of head_dim={d} channels "
        f"has head_dim // group_size = {groups} groups, each with its own scale and zero-point",
        scales_=2 * sb,
    )
    add(
        f"group_size taken as the number of groups: a vector has head_dim // group_size = {groups} groups of "
        f"{group} channels, not {group} groups",
        scales_=2 * group * sb,
    )
    add(
        f"bits taken as bytes: {d} codes of {bits} bits pack into ceil({d} * {bits} / 8) = {codes} bytes, "
        f"not {d * bits}",
        codes_=d * bits,
    )
    add(
        f"the codes stored one per byte: {d} codes of {bits} bits are packed, ceil({d} * {bits} / 8) = "
        f"{codes} bytes per vector",
        codes_=d,
    )
    if sb != 2:
        add(
            f"scale_dtype is ignored (2-byte fp16 scales used): {scale_dtype!r} has {sb} bytes per number, "
            "bytes_per_element(scale_dtype)",
            scales_=2 * groups * 2,
        )
    if d * bits % 8:
        exact = Fraction(d * bits, 8)
        rounding = (
            f"the packed codes are not rounded up to whole bytes: {d} codes of {bits} bits "
            f"({d * bits} bits) take ceil({d} * {bits} / 8) = {codes} whole bytes per vector"
        )
        add(rounding + f", not {d * bits // 8} (floor)", codes_=d * bits // 8)
        whole = _q_total(shape, seq_len, batch, exact, scales)
        for value in (whole, Fraction(math.floor(whole)), Fraction(math.ceil(whole))):
            out.setdefault(rounding + f", not {float(exact):g} (a fraction of a byte)", value)
            if value not in out.values():
                out[rounding + f", not {float(exact):g} rounded at the end"] = value
    add(
        "keys only: every token, layer and KV head stores a key vector AND a value vector (the factor 2)",
        kv=1,
    )
    add("keys and values counted twice: the factor 2 appears once", kv=4)
    if shape.num_heads != shape.num_kv_heads:
        add(
            f"num_heads ({shape.num_heads}) instead of num_kv_heads ({shape.num_kv_heads}): the cache stores "
            "the KV heads, each shared by a group of query heads",
            heads=shape.num_heads,
        )
    if batch != 1:
        add(f"the batch is ignored: each of the {batch} requests stores its own keys and values", batch=1)
    if seq_len != 1:
        add(f"seq_len is ignored: every one of the {seq_len} tokens stores its vectors", seq_len=1)
    want = quantized_expected(shape, seq_len, bits, group, batch, scale_dtype)
    return {m: v for m, v in out.items() if v != want}


def _q_value(
    fn: Callable[..., Any],
    shape: ModelShape,
    seq_len: int,
    bits: int,
    group: int = 64,
    batch: int = 1,
    scale_dtype: Any = "fp16",
    how: str = "positional",
) -> int:
    """One valid call: the learner's result must be the docstring's bytes, an int."""
    label = _q_label(shape, seq_len, bits, group, batch, scale_dtype)
    if how == "defaults":
        assert (group, batch, scale_dtype) == (64, 1, "fp16")
        args, kwargs = (shape, seq_len, bits), {}
        label = (
            f"{Q_NAME}({shape_label(shape)}, seq_len={seq_len}, bits={bits}) (group_size, batch and "
            "scale_dtype left to their defaults, 64, 1 and 'fp16')"
        )
    elif how == "keywords":
        args = (shape,)
        kwargs = {
            "seq_len": seq_len,
            "bits": bits,
            "group_size": group,
            "batch": batch,
            "scale_dtype": scale_dtype,
        }
        label += " (every argument after shape by keyword)"
    else:
        args, kwargs = (shape, seq_len, bits, group, batch, scale_dtype), {}
    valid = (
        f"the arguments are valid: bits={bits} is 8, 4 or 2 and group_size={group} divides "
        f"head_dim={shape.head_dim}"
    )
    got = _call(fn, Q_NAME, label, args, kwargs, valid, _dtype_hint(scale_dtype))
    want = quantized_expected(shape, seq_len, bits, group, batch, scale_dtype)
    d = shape.head_dim
    return _compare(
        label,
        got,
        {want},
        quantized_variants(shape, seq_len, bits, group, batch, scale_dtype),
        f"2 (K and V) * num_layers * num_kv_heads * seq_len * batch vectors of ceil({d} * {bits} / 8) code "
        f"bytes + 2 * ({d} // {group}) scales and zero-points of {_bytes(scale_dtype)} bytes each",
    )


def _q_error(fn: Callable[..., Any], shape: ModelShape, bits: Any, group: Any, seq_len: int = 1000) -> None:
    """bits not in {2, 4, 8} or a group_size that does not divide head_dim: ValueError."""
    if bits not in (2, 4, 8):
        why = f"bits={bits} is not 8, 4 or 2"
    elif group < 1:
        why = f"group_size={group} is not positive: a group holds at least one channel"
    else:
        assert shape.head_dim % group, (shape.head_dim, group)
        why = f"group_size={group} does not divide head_dim={shape.head_dim}"
    label = _q_label(shape, seq_len, bits, group, 1, "fp16")
    expect_value_error(fn, Q_NAME, label, (shape, seq_len, bits, group, 1, "fp16"), why)


def _divisors(n: int) -> list[int]:
    return [g for g in range(1, n + 1) if n % g == 0]


@graded(Q_NAME, *Q_REFERENCES)
def quantized_kv_bytes_visible(fn: Callable[..., Any]) -> None:
    """Llama-3-8B at 131,072 tokens in int4 (5 GiB), int8 with a batch, Llama-2-70B int2 in bf16 scales, a
    head_dim whose packed codes need rounding up, and the two ValueErrors."""
    llama3 = MODEL_CONFIGS["Llama-3-8B"]
    _q_value(fn, llama3, 131072, 4, 32)
    _q_value(fn, llama3, 1024, 8, 64, 3)
    _q_value(fn, MODEL_CONFIGS["Llama-2-70B"], 4096, 2, 128, 2, "bf16")
    _q_value(fn, hand_made(4, 2, 6, 2), 10, 2, 3, 2)  # 6 codes of 2 bits: 12 bits fill 2 bytes, not 1.5
    _q_error(fn, llama3, 3, 64)
    _q_error(fn, llama3, 4, 48)
    print("visible tests passed")


@graded(Q_NAME, *Q_REFERENCES)
def quantized_kv_bytes_hidden(fn: Callable[..., Any]) -> None:
    """Every model of MODEL_CONFIGS at every bits and group size, head_dims whose codes need rounding up,
    every scale_dtype spelling, defaults and keywords, long contexts and big batches, both ValueErrors, no
    state between calls."""
    llama3 = MODEL_CONFIGS["Llama-3-8B"]
    first = (llama3, 4096, 4, 32, 5, "bf16")
    _q_value(fn, *first)
    # Every model, every bits, every power-of-two group size that divides its head_dim, past its context.
    for i, shape in enumerate(MODEL_CONFIGS.values()):
        for bits in (8, 4, 2):
            for group in (1, 2, 8, 16, 32, 64, 128, 256):
                if shape.head_dim % group == 0:
                    _q_value(fn, shape, shape.max_seq_len + 1 + i, bits, group, 3)
    # head_dims where ceil(head_dim * bits / 8) rounds up, every group size that divides them.
    for heads, kv, d, layers in (
        (4, 2, 6, 2),
        (3, 1, 5, 3),
        (6, 3, 7, 1),
        (8, 8, 10, 2),
        (2, 1, 3, 5),
        (4, 4, 100, 2),
    ):
        shape = hand_made(heads, kv, d, layers)
        for bits in (2, 4, 8):
            for group in _divisors(d):
                _q_value(fn, shape, 7, bits, group, 2)
    # Every scale_dtype spelling, with int8 and int2 codes.
    for scale_dtype in SCALE_DTYPES:
        _q_value(fn, llama3, 2048, 4, 64, 2, scale_dtype)
        _q_value(fn, MODEL_CONFIGS["Qwen2-7B"], 1000, 2, 32, 3, scale_dtype)
        _q_value(fn, hand_made(3, 1, 5, 3), 11, 4, 5, 1, scale_dtype)
    _q_value(fn, hand_made(12, 4, 80, 3), 1001, 4, 16, 1, torch.float32)
    _q_value(fn, hand_made(12, 4, 96, 3), 333, 2, 96, 9)
    # The defaults (group_size 64, batch 1, fp16 scales), keywords, and loads far past the visible ones.
    _q_value(fn, llama3, 8192, 4, how="defaults")
    _q_value(fn, MODEL_CONFIGS["Gemma-7B"], 8192, 2, how="defaults")
    _q_value(fn, MODEL_CONFIGS["Mixtral-8x7B"], 32768, 8, 16, 7, "bf16", how="keywords")
    _q_value(fn, MODEL_CONFIGS["Llama-3.1-405B"], 131072, 4, 64, 64, "fp16")
    _q_value(fn, MODEL_CONFIGS["Llama-3.1-405B"], 1_000_003, 2, 128, 1000, "fp32")
    _q_value(fn, MODEL_CONFIGS["Llama-2-70B"], 131073, 8, 1, 1000, torch.bfloat16)
    _q_value(fn, MODEL_CONFIGS["GPT-2 124M"], 1, 2, 64, 1, "fp16")
    # The ValueErrors: bits not in {2, 4, 8}; a group_size that does not divide head_dim.
    for bits in (0, 1, 3, 5, 6, 7, 16, 24, 32, -4):
        _q_error(fn, llama3, bits, 64)
    for shape, group in ((llama3, 48), (llama3, 3), (llama3, 256), (llama3, 96), (llama3, 129), (llama3, 0),
                         (llama3, -64), (llama3, -1)):  # fmt: skip
        _q_error(fn, shape, 4, group)
    for group in (4, 5, 12):
        _q_error(fn, hand_made(4, 2, 6, 2), 2, group)
    _q_error(fn, hand_made(3, 1, 5, 3), 8, 2)
    _q_error(fn, MODEL_CONFIGS["Gemma-7B"], 2, 96)
    # Two shapes with one name: the answer comes from this call's shape, never from a memo keyed by its name.
    twin = _q_value(fn, TWINS[0], 100, 4, 32)
    for which in (1, 2):
        _same_name(Q_NAME, lambda which=which: fn(TWINS[which], 100, 4, 32, 1, "fp16"), twin, which)
        _q_value(fn, TWINS[which], 100, 4, 32)
    _again(lambda: _q_value(fn, *first), Q_NAME)
    print("hidden tests passed")


# --- max_requests_per_gpu ---------------------------------------------------------------------------------


def split(shape: ModelShape, tp: int) -> tuple[int | None, str]:
    """(KV heads per GPU, why) for a split the docstring allows; (None, why not) otherwise."""
    h, kv = shape.num_heads, shape.num_kv_heads
    if tp < 1:
        return None, f"tp={tp} is not a number of GPUs (tp >= 1)"
    if h % tp:
        return None, f"tp={tp} does not divide the {h} query heads"
    if (kv % tp) if tp <= kv else (tp % kv):
        return None, f"tp={tp} neither divides the {kv} KV heads nor is a multiple of them"
    if tp <= kv:
        return kv // tp, f"tp={tp} divides the {kv} KV heads: {kv // tp} per GPU"
    return 1, f"tp={tp} is a multiple of the {kv} KV heads: each GPU keeps a copy of one KV head"


@dataclasses.dataclass(frozen=True)
class Load:
    """One call of max_requests_per_gpu."""

    shape: ModelShape
    seq_len: int
    tp: int
    gpu_gib: float = 80.0
    utilization: float = 0.9
    weight_dtype: Any = "bf16"
    kv_dtype: Any = "bf16"

    def label(self) -> str:
        return (
            f"{R_NAME}({shape_label(self.shape)}, seq_len={self.seq_len}, tp={self.tp}, "
            f"gpu_gib={self.gpu_gib}, utilization={self.utilization}, weight_dtype={self.weight_dtype!r}, "
            f"kv_dtype={self.kv_dtype!r})"
        )

    def quotient(self, heads: int | None = None, **slip: Any) -> float:
        """Requests that fit, unrounded, as the docstring computes it; `slip` changes one part of it."""
        s = self.shape
        heads = split(s, self.tp)[0] if heads is None else heads
        unit = slip.get("unit", GiB)
        gpu = self.gpu_gib * unit
        weights = (
            s.params_b * slip.get("params_unit", 1e9) * bytes_per_element(slip.get("wd", self.weight_dtype))
        )
        weights /= slip.get("weights_over", self.tp)
        if slip.get("utilization_after"):
            free = self.utilization * (gpu - weights)
        else:
            free = slip.get("utilization", self.utilization) * gpu - weights
        per_request = slip.get("kv", 2) * s.num_layers * heads * s.head_dim * self.seq_len
        per_request *= bytes_per_element(slip.get("kd", self.kv_dtype)) / slip.get("kv_over", 1)
        return free / per_request

    def want(self) -> int:
        """The answer shown: the floor, or the whole number the quotient is within float rounding of."""
        q = self.quotient()
        n = round(q)
        return max(0, n if abs(q - n) <= NEAR_TIE * max(1.0, abs(q)) else math.floor(q))

    def accepted(self) -> set[int]:
        """The right answer; near a whole number, both neighbours (float rounding may land on either)."""
        q = self.quotient()
        out = {max(0, math.floor(q))}
        n = round(q)
        if abs(q - n) <= NEAR_TIE * max(1.0, abs(q)):
            out |= {max(0, n), max(0, n - 1)}
        return out

    def variants(self) -> dict[str, float]:
        """The usual slips, message -> count, most specific first; those that give a right answer dropped."""
        s, tp, kv, h = self.shape, self.tp, self.shape.num_kv_heads, self.shape.num_heads
        q = self.quotient()
        right = self.accepted()
        out: dict[str, float] = {}

        def add(message: str, value: float) -> None:
            out.setdefault(message, value)

        def floor0(x: float) -> int:
            return max(0, math.floor(x))

        if tp > 1:
            add(
                f"the weights are not divided by tp: each of the {tp} GPUs holds 1/tp of them",
                floor0(self.quotient(weights_over=1)),
            )
        if tp > kv:
            add(
                f"the whole KV cache divided by tp: past tp = num_kv_heads ({kv}) each GPU keeps a copy of "
                "one KV head, so a request's cache per GPU stops shrinking",
                floor0(self.quotient(heads=kv, kv_over=tp)),
            )
        if 0 < math.ceil(q) - q < 1e-3:
            add(
                f"a margin for float noise added before rounding down: the quotient is {q:.10f}, just under "
                f"{math.ceil(q)}, so {max(0, math.floor(q))} whole requests fit",
                max(0, math.ceil(q)),
            )
        add("rounded up (ceil): only whole requests that fit count, round down", max(0, math.ceil(q)))
        add("rounded to the nearest: only whole requests that fit count, round down", max(0, round(q)))
        add(
            "a negative count when the weights do not fit: return 0 when nothing is left after the weights",
            math.floor(q),
        )
        add("a negative count when the weights do not fit (truncated): return 0", int(q))
        add(
            f"GB for GiB: the usable memory is utilization * gpu_gib * 2**30 bytes, not * 10**9 (a GPU sold "
            f"as {self.gpu_gib:g}GB holds {self.gpu_gib:g} GiB)",
            floor0(self.quotient(unit=1e9)),
        )
        add(
            f"utilization is ignored: only utilization ({self.utilization}) * gpu_gib * 2**30 bytes are "
            "usable",
            floor0(self.quotient(utilization=1.0)),
        )
        add(
            "utilization applied after the weights: the usable memory is utilization * gpu_gib * 2**30, and "
            "the weights come out of it",
            floor0(self.quotient(utilization_after=True)),
        )
        add(
            "billions of parameters taken as 2**30: params_b billion parameters are params_b * 10**9",
            floor0(self.quotient(params_unit=GiB)),
        )
        add(
            "params_b not multiplied by 10**9: params_b counts billions of parameters",
            floor0(self.quotient(params_unit=1)),
        )
        wb, kb = bytes_per_element(self.weight_dtype), bytes_per_element(self.kv_dtype)
        if wb != kb:
            add(
                f"weight_dtype and kv_dtype swapped: the weights are {self.weight_dtype!r} ({wb:g} bytes per "
                f"parameter), the cache {self.kv_dtype!r} ({kb:g} bytes per number)",
                floor0(self.quotient(wd=self.kv_dtype, kd=self.weight_dtype)),
            )
            both = f"the weights are {self.weight_dtype!r}, the cache {self.kv_dtype!r}"
            add(
                f"one dtype used for both (kv_dtype for the weights): {both}",
                floor0(self.quotient(wd=self.kv_dtype)),
            )
            add(
                f"one dtype used for both (weight_dtype for the cache): {both}",
                floor0(self.quotient(kd=self.weight_dtype)),
            )
        if wb != 2:
            add(
                f"weight_dtype is ignored (2 bytes per parameter): {self.weight_dtype!r} has {wb:g}",
                floor0(self.quotient(wd="bf16")),
            )
        if kb != 2:
            add(
                f"kv_dtype is ignored (2 bytes per number): {self.kv_dtype!r} has {kb:g}",
                floor0(self.quotient(kd="bf16")),
            )
        if h != kv:
            add(
                f"query heads counted: each GPU stores keys and values of its KV heads (of {kv}), not of its "
                f"query heads (of {h})",
                floor0(self.quotient(heads=max(1, h // tp))),
            )
        if tp > 1:
            add(
                f"the KV heads are not split: each GPU holds the cache of {split(s, tp)[0]} KV heads per "
                f"request, not all {kv}",
                floor0(self.quotient(heads=kv)),
            )
        add("keys only: every token stores a key AND a value (the factor 2)", floor0(self.quotient(kv=1)))
        if tp > 1:
            add(
                f"multiplied by tp: every GPU holds a slice of every request, so the group's batch is one "
                f"GPU's count, not {tp} times it",
                floor0(q) * tp,
            )
        return {m: v for m, v in out.items() if v not in right}


def _r_value(fn: Callable[..., Any], load: Load, how: str = "positional") -> int:
    """One valid split: the learner's result must be the docstring's count, an int."""
    heads, why = split(load.shape, load.tp)
    assert heads is not None, why
    label = load.label()
    if how == "defaults":
        assert (load.gpu_gib, load.utilization, load.weight_dtype, load.kv_dtype) == (
            80.0,
            0.9,
            "bf16",
            "bf16",
        )
        args, kwargs = (load.shape, load.seq_len, load.tp), {}
        label = (
            f"{R_NAME}({shape_label(load.shape)}, seq_len={load.seq_len}, tp={load.tp}) (the rest left to "
            "their defaults: gpu_gib=80.0, utilization=0.9, weight_dtype='bf16', kv_dtype='bf16')"
        )
    elif how == "keywords":
        names = ("seq_len", "tp", "gpu_gib", "utilization", "weight_dtype", "kv_dtype")
        args, kwargs = (load.shape,), {n: getattr(load, n) for n in names}
        label += " (every argument after shape by keyword)"
    else:
        args = (
            load.shape,
            load.seq_len,
            load.tp,
            load.gpu_gib,
            load.utilization,
            load.weight_dtype,
            load.kv_dtype,
        )
        kwargs = {}
    copied = load.tp > load.shape.num_kv_heads
    floored = (
        f": num_kv_heads // tp floors to 0 KV heads past tp = num_kv_heads ({load.shape.num_kv_heads}), but "
        "each GPU keeps a copy of one KV head (the one its query heads read), so a request's cache per GPU "
        "stops shrinking there"
    )

    def hint(exc: Exception) -> str:
        if copied and isinstance(exc, (ZeroDivisionError, OverflowError)):
            return floored
        return _dtype_hint(load.weight_dtype, load.kv_dtype)(exc)

    got = _call(fn, R_NAME, label, args, kwargs, f"the split is valid: {why}", hint)
    if copied and isinstance(got, float) and not math.isfinite(got):
        raise CheckFailed(f"{label} returned {got!r}{floored}")
    return _compare(
        label,
        got,
        load.accepted(),
        load.variants(),
        "floor((utilization * gpu_gib * 2**30 - params_b * 10**9 * bytes_per_element(weight_dtype) / tp) / "
        f"(2 * num_layers * {heads} KV heads per GPU * head_dim * seq_len * bytes_per_element(kv_dtype))), "
        f"at least 0 ({why})",
        load.want(),
    )


def _r_error(fn: Callable[..., Any], shape: ModelShape, tp: int, seq_len: int = 4096) -> None:
    heads, why = split(shape, tp)
    assert heads is None, why
    expect_value_error(fn, R_NAME, Load(shape, seq_len, tp).label(), (shape, seq_len, tp), why)


def _r_sweep(fn: Callable[..., Any], shape: ModelShape, tps: Any, seq_len: int, **kw: Any) -> None:
    for tp in tps:
        if split(shape, tp)[0] is None:
            _r_error(fn, shape, tp, seq_len)
        else:
            _r_value(fn, Load(shape, seq_len, tp, **kw))


@graded(R_NAME, *R_REFERENCES)
def max_requests_per_gpu_visible(fn: Callable[..., Any]) -> None:
    """Llama-3-70B at tp 8 (177 requests of 8,192 tokens) and tp 16 (a KV head copied), Llama-3.1-405B whose
    weights do not fit on 8 GPUs, an fp8 cache, and splits that must raise ValueError."""
    llama70 = MODEL_CONFIGS["Llama-3-70B"]
    _r_value(fn, Load(llama70, 8192, 8))
    _r_value(fn, Load(llama70, 8192, 16))
    _r_value(fn, Load(MODEL_CONFIGS["Llama-3.1-405B"], 8192, 8))
    _r_value(fn, Load(MODEL_CONFIGS["Llama-3-8B"], 32768, 4, 40.0, 0.95, "bf16", "fp8"))
    _r_error(fn, MODEL_CONFIGS["Qwen2-7B"], 8)  # 28 query heads
    _r_error(fn, hand_made(12, 3, 64), 4)  # more GPUs than KV heads, not a multiple of them
    print("visible tests passed")


@graded(R_NAME, *R_REFERENCES)
def max_requests_per_gpu_hidden(fn: Callable[..., Any]) -> None:
    """Every model at tp 1..16 and beyond, hand-made shapes for each split rule, weights that do not fit,
    GPU sizes and utilizations, every dtype spelling, defaults and keywords, long contexts, no state."""
    llama70 = MODEL_CONFIGS["Llama-3-70B"]
    first = Load(llama70, 8192, 16, 141.0, 0.95, "fp8", "bf16")
    _r_value(fn, first)
    # The split rules one at a time, on shapes whose KV heads do not split evenly.
    three = hand_made(12, 3, 64, 8, 20.0)
    for tp in (1, 3, 6, 12):
        _r_value(fn, Load(three, 5000, tp))
    for shape, tp in ((three, 2), (three, 4), (hand_made(12, 4, 64), 8), (hand_made(12, 6, 64), 4)):
        _r_error(fn, shape, tp)
    _r_error(fn, MODEL_CONFIGS["GPT-2 XL 1.5B"], 2)  # 25 query heads
    _r_error(fn, MODEL_CONFIGS["Qwen2-7B"], 7)  # 7 divides the 28 query heads, not the 4 KV heads
    _r_error(fn, MODEL_CONFIGS["Llama-2-13B"], 16)
    for tp in (0, -1, -8):  # no GPUs, or a negative count: every divisibility test passes for -1 and -8
        _r_error(fn, MODEL_CONFIGS["Llama-3-70B"], tp)
    # Every model, tp 1..16 and beyond, on two GPU sizes.
    for i, shape in enumerate(MODEL_CONFIGS.values()):
        _r_sweep(fn, shape, range(1, 17), 4096 + i)
        _r_sweep(fn, shape, LARGE_TPS, shape.max_seq_len + 1, gpu_gib=141.0, utilization=0.95)
    for shape in (
        hand_made(24, 6, 80, 3, 2.5),
        hand_made(16, 1, 128, 2, 1.0),
        hand_made(30, 5, 96, 5, 9.0),
    ):
        _r_sweep(fn, shape, range(1, 33), 2049)
    # Weights that do not fit (0, never negative), far and barely; weights that fit, no room for a request.
    for tp in (1, 2, 4, 8):
        _r_value(fn, Load(MODEL_CONFIGS["Llama-3.1-405B"], 4096, tp))
    _r_value(fn, Load(llama70, 1024, 1, 80.0, 0.9, "fp16", "fp16"))
    _r_value(fn, Load(llama70, 1024, 2, 80.0, 0.9, "fp32", "fp16"))
    _r_value(fn, Load(hand_made(8, 8, 64, 2, 77.0), 1000, 1, 80.0, 0.5, "int8", "int8"))
    _r_value(fn, Load(MODEL_CONFIGS["Llama-2-70B"], 131072, 2, 80.0, 0.9))
    # No weights, 1 GiB and requests of 2**30 + 4 bytes: 0.9999999963 of a request, every quantity exact in
    # floating point, so a margin against float noise before the floor shows.
    _r_value(fn, Load(hand_made(1, 1, 1, 1, 0.0), 2**28 + 1, 1, 1.0, 1.0, "fp16", "fp16"))
    # GPU sizes and utilizations, every dtype spelling for weights and cache.
    for gpu_gib, utilization in ((24.0, 0.9), (40.0, 0.85), (94.5, 0.92), (141.0, 1.0), (192.0, 0.5)):
        _r_value(fn, Load(MODEL_CONFIGS["Mistral-7B"], 8192, 2, gpu_gib, utilization))
    for weight_dtype in WEIGHT_DTYPES:
        for kv_dtype in KV_DTYPES:
            _r_value(fn, Load(MODEL_CONFIGS["Llama-3-8B"], 8192, 4, 48.0, 0.9, weight_dtype, kv_dtype))
    for name in MORE_DTYPE_NAMES:
        _r_value(fn, Load(MODEL_CONFIGS["Llama-3-8B"], 8192, 4, 48.0, 0.9, name, "bf16"))
        _r_value(fn, Load(MODEL_CONFIGS["Llama-3-8B"], 8192, 4, 48.0, 0.9, "bf16", name))
    # The defaults, keywords, and loads far past the visible ones (contexts past 128k, batches past 1,000).
    _r_value(fn, Load(MODEL_CONFIGS["Llama-3-8B"], 8192, 1), how="defaults")
    _r_value(fn, Load(llama70, 8192, 32), how="defaults")
    _r_value(fn, Load(MODEL_CONFIGS["Mixtral-8x7B"], 32768, 4, 141.0, 0.95, "bf16", "int8"), how="keywords")
    _r_value(fn, Load(MODEL_CONFIGS["Llama-3.1-405B"], 131072, 16, 141.0, 0.95, "fp8", "fp8"))
    _r_value(fn, Load(MODEL_CONFIGS["Llama-3.1-405B"], 1_000_003, 64))
    _r_value(fn, Load(MODEL_CONFIGS["GPT-2 124M"], 1024, 4))
    _r_value(fn, Load(MODEL_CONFIGS["GPT-2 124M"], 1, 1))
    # Two shapes with one name: the answer comes from this call's shape, never from a memo keyed by its name.
    twin = _r_value(fn, Load(TWINS[0], 100, 4))
    for which in (1, 2):
        second = TWINS[which]
        _same_name(R_NAME, lambda: fn(second, 100, 4, 80.0, 0.9, "bf16", "bf16"), twin, which)  # noqa: B023
        _r_value(fn, Load(TWINS[which], 100, 4))
    _again(lambda: _r_value(fn, first), R_NAME)
    print("hidden tests passed")
