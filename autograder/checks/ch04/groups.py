"""Exercise `quantize_groups`: asymmetric codes with a zero-point, one scale per group of G channels."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..common import CheckFailed, assert_shape, expect
from ..delegation import graded
from ..fixtures import generator, randn
from ..properties import assert_dtype, assert_no_nan_cast, assert_unchanged, call_pure, snapshot
from ._bound import assert_within_half_step, code_mismatch, first_match, index_of, scale_mismatch

REFERENCES = (
    "kvlib.quant.quantize_groups",
    "kvlib.quant.quantize",  # imported by the setup cell: quantize(x, bits, "asymmetric", ...) is the answer
    "kvlib.quant._asymmetric_scales",
)

_LEADING_AXES_HINT = (
    "x may have any number of leading axes ([T, D], [B, T, D], [B, KV, T, D], ...): split only the last "
    "axis into groups (x.reshape(*x.shape[:-1], D // G, G)) and never unpack x.shape into fixed names"
)


class _Case:
    """One call: x, group_size, bits and how they are passed; `what` names it in every message."""

    def __init__(self, x: Tensor, group_size: int, bits: int = 4, style: str = "positional", note: str = ""):
        self.x, self.group_size, self.bits, self.style = x, group_size, bits, style
        self.levels = 2**bits - 1
        args = {
            "positional": f"x, {group_size}, {bits}",
            "default": f"x, {group_size}",
            "keywords": f"x, group_size={group_size}, bits={bits}",
        }[style]
        dtype = str(x.dtype).removeprefix("torch.")
        layout = "" if x.is_contiguous() else " non-contiguous"
        self.what = f"quantize_groups({args}) for x of shape {tuple(x.shape)} {dtype}{layout}" + (
            f" ({note})" if note else ""
        )

    def call(self, fn: Callable[..., Any]) -> Any:
        if self.style == "default":
            return call_pure(fn, self.x, self.group_size, what=self.what)
        if self.style == "keywords":
            return call_pure(fn, self.x, group_size=self.group_size, bits=self.bits, what=self.what)
        return call_pure(fn, self.x, self.group_size, self.bits, what=self.what)

    def grouped(self, t: Tensor) -> Tensor:
        """[..., T, D] -> [..., T, D / G, G]: group g of a token holds channels g*G .. (g+1)*G - 1."""
        return t.reshape(*t.shape[:-1], t.shape[-1] // self.group_size, self.group_size)

    def per_group(self, t: Tensor) -> Tensor:
        """[..., T, D / G] -> [..., T, D]: each group's value repeated over its G channels."""
        return t.repeat_interleave(self.group_size, dim=-1)


def _reference(case: _Case) -> tuple[Tensor, Tensor, Tensor]:
    from kvlib.quant import quantize_groups

    return quantize_groups(case.x, case.group_size, case.bits)


def _check_case(fn: Callable[..., Any], case: _Case, hint: str = "") -> tuple[Tensor, Tensor, Tensor]:
    try:
        result = case.call(fn)
    except CheckFailed as exc:
        if "raised" in str(exc) and case.x.dim() != 4:
            raise CheckFailed(f"{exc}; {_LEADING_AXES_HINT}") from None
        if "raised" in str(exc) and not case.x.is_contiguous():
            raise CheckFailed(f"{exc}; x can be non-contiguous (a transposed cache): use reshape") from None
        raise
    expect(
        isinstance(result, (tuple, list)) and len(result) == 3,
        f"{case.what} must return a triple (codes, scale, zero_point), got {type(result).__name__}"
        + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else ""),
    )
    codes, scale, zero_point = result
    _check_types(case, codes, scale, zero_point)
    ref_codes, ref_scale, ref_zero_point = _reference(case)
    _check_scale(case, scale, ref_scale)
    _check_zero_point(case, zero_point, ref_scale, ref_zero_point)
    _check_codes(case, codes, ref_scale, zero_point, scale, hint)
    if bool((case.grouped(case.x) == 0).all(dim=-1).any()):  # a late guard casts 0 / 0, which x86 makes 0
        assert_no_nan_cast(lambda: case.call(fn), case.what, "group")
    return codes, scale, zero_point


# --- shapes and dtypes -------------------------------------------------------------------------------------


def _scale_shape_hint(case: _Case, got: tuple[int, ...]) -> str:
    *lead, t, d = case.x.shape
    n = d // case.group_size
    if got == (*lead, t, 1) and n != 1:
        return f"one per group of {case.group_size} channels, not one per token: D // G = {n} per token"
    if got == (*lead, t, n, 1):
        return "drop the group axis' reduced dimension (amin/amax over dim=-1 without keepdim)"
    if got == (*lead, t, case.group_size) and n != case.group_size:
        return (
            "the statistics ran over the wrong axis of [..., T, D // G, G]: reduce over the G channels (-1)"
        )
    if got == (*lead, t // case.group_size, d) if t % case.group_size == 0 else False:
        return "groups run over the channels of each token, not over tokens"
    return "[..., T, D // G]: one value per group of G neighbouring channels of each token"


def _check_types(case: _Case, codes: Any, scale: Any, zero_point: Any) -> None:
    shape = tuple(case.x.shape)
    groups = (*shape[:-1], shape[-1] // case.group_size)
    shapes = [tuple(getattr(t, "shape", ())) for t in (codes, scale, zero_point)]
    dtypes = [getattr(t, "dtype", None) for t in (codes, scale, zero_point)]
    expect(
        not (shapes[0] == groups != shape and shape in shapes[1:]),
        f"{case.what}: codes come first: return (codes, scale, zero_point) in that order",
    )
    expect(
        not (dtypes[1] == torch.uint8 and dtypes[2] == torch.float32),
        f"{case.what}: the result looks like (codes, zero_point, scale): return (codes, scale, zero_point)",
    )
    assert_shape(codes, shape, f"{case.what}: codes", "one code per element, reshaped back to x's shape")
    for name, value in (("scale", scale), ("zero_point", zero_point)):
        got = tuple(getattr(value, "shape", ()))
        assert_shape(value, groups, f"{case.what}: {name}", _scale_shape_hint(case, got))
    expect(
        codes.dtype != torch.int8,
        f"{case.what}: codes must be torch.uint8 (codes run from 0 to L = {case.levels}), got torch.int8, "
        "which holds only up to 127: 8-bit codes would wrap around",
    )
    assert_dtype(codes, torch.uint8, f"{case.what}: codes", "clamp to [0, L], then .to(torch.uint8)")
    assert_dtype(scale, torch.float32, f"{case.what}: scale", "compute and return the scale in float32")
    assert_dtype(
        zero_point, torch.uint8, f"{case.what}: zero_point", "it is a code: round it, then .to(torch.uint8)"
    )


# --- scale -------------------------------------------------------------------------------------------------


def _range(groups: Tensor, dim: int = -1) -> Tensor:
    """hi - lo of each group along `dim`, the range widened to include 0."""
    return groups.amax(dim=dim).clamp(min=0) - groups.amin(dim=dim).clamp(max=0)


def _other_bits(case: _Case, span: Tensor) -> dict[str, Tensor | None]:
    """The scale at the other bit widths: a default other than 4, or bits ignored (hard-coded)."""
    out: dict[str, Tensor | None] = {}
    for b in (4, 8, 2):
        if b == case.bits:
            continue
        wrong = 2**b - 1
        if case.style == "default":
            message = (
                f"bits must default to 4: called without bits, your scale is (hi - lo) / {wrong} (bits={b})"
            )
        else:
            message = (
                f"bits is ignored: at bits={case.bits}, L = 2**bits - 1 = {case.levels}, but the scale was "
                f"divided by {wrong} ({b} bits hard-coded)"
            )
        out[message] = span / wrong
    return out


def _scale_variants(case: _Case) -> dict[str, Tensor | None]:
    x32 = case.x.detach().float()
    groups = case.grouped(x32)  # (..., T, D/G, G)
    g, d, levels = case.group_size, x32.shape[-1], case.levels
    span = _range(groups)  # (..., T, D/G)
    own = groups.amax(dim=-1) - groups.amin(dim=-1)  # not widened to 0
    per_token = None if g == d else (_range(x32)[..., None] / levels).expand_as(span)
    strided = None if g in (1, d) else _range(x32.reshape(*x32.shape[:-1], g, d // g), dim=-2) / levels
    first_row = (span[:1] / levels).expand_as(span) if x32.dim() > 2 else None
    in_dtype = (
        None if case.x.dtype == torch.float32 else (_range(case.grouped(case.x.detach())) / levels).float()
    )
    largest = torch.finfo(case.x.dtype).max
    return _other_bits(case, span) | {
        "the range is not widened to include 0: use lo = min(min(group), 0) and hi = max(max(group), 0), "
        "so a group that is all positive (or all negative) still has 0 on its grid": own / levels,
        f"the scale must be (hi - lo) / L with L = 2**bits - 1 = {levels}, not / 2**bits = {levels + 1}": span
        / (levels + 1),
        f"one scale per token, not per group: each group of {g} neighbouring channels needs its own "
        "(your code is right only when group_size == D)": per_token,
        "the groups are not neighbouring channels: group g holds x[..., g*G:(g+1)*G], i.e. reshape to "
        "[..., D // G, G], not [..., G, D // G]": strided,
        "the scale is symmetric, 2 max|x| / L: the asymmetric range is [lo, hi] = [min(min, 0), "
        "max(max, 0)]": 2 * groups.abs().amax(dim=-1) / levels,
        "the scales of the first sequence were used for every row of the batch": first_row,
        f"the scale was computed in {case.x.dtype}, which rounds it (and hi - lo can overflow past "
        f"{largest:g}): compute in float32 (x.float() first)": in_dtype,
    }


def _check_zero_groups(case: _Case, scale: Tensor) -> None:
    zeros = (case.grouped(case.x) == 0).all(dim=-1)  # (..., T, D/G)
    if not bool(zeros.any()):
        return
    s = scale.detach().double()[zeros]
    broken = torch.isnan(s) | (s == 0)
    if bool(broken.any()):
        raise CheckFailed(
            f"{case.what}: a group of zeros got scale {s[broken][0].item()}: hi - lo = 0 there, and 0 / 0 is "
            "NaN; give such a group scale 1.0 (torch.where(scale > 0, scale, 1.0)), so its codes and "
            "zero_point are 0"
        )
    expect(
        bool((s == 1.0).all()),
        f"{case.what}: a group of zeros must get scale 1.0 (the docstring's guard), got "
        f"{s[s != 1.0][0].item() if bool((s != 1.0).any()) else 1.0:.3g}; a clamp(min=eps) changes it: use "
        "torch.where(scale > 0, scale, torch.ones_like(scale))",
    )


def _check_scale(case: _Case, scale: Tensor, ref_scale: Tensor) -> None:
    bad = scale_mismatch(scale, ref_scale)
    nonzero = ~(case.grouped(case.x) == 0).all(dim=-1)
    if bool((bad & nonzero).any()):
        mistake = first_match(_scale_variants(case), lambda c: scale_mismatch(scale, c) & nonzero)
        if mistake:
            raise CheckFailed(f"{case.what}: scale is wrong: {mistake}")
    _check_zero_groups(case, scale)
    if bool(bad.any()):
        at = index_of(bad)
        raise CheckFailed(
            f"{case.what}: scale is wrong for group {at[-1]} of token {at[:-1]}: expected (hi - lo) / L = "
            f"{ref_scale[at].item():.6g}, got {scale[at].item():.6g}"
        )


# --- zero-point --------------------------------------------------------------------------------------------


def _zero_point_variants(case: _Case, scale: Tensor) -> dict[str, Tensor]:
    lo = case.grouped(case.x.detach().float()).amin(dim=-1).clamp(max=0)
    exact = -lo / scale  # (..., T, D/G), in float32 as a learner computes it
    return {
        "zero_point must be round(-lo / scale); it was truncated or floored (a cast to uint8 does not "
        "round)": exact.floor(),
        "zero_point must be round(-lo / scale), not rounded up with ceil": exact.ceil(),
        f"zero_point is the code of 0.0 in each group, round(-lo / scale), not the middle code "
        f"2**(bits-1) = {2 ** (case.bits - 1)}": torch.full_like(exact, 2 ** (case.bits - 1)),
        "zero_point must be round(-lo / scale) with lo = min(min(group), 0) (minus sign included), so it "
        "lies in [0, L]": (lo / scale).round(),
    }


def _check_zero_point(case: _Case, zero_point: Tensor, ref_scale: Tensor, ref_zero_point: Tensor) -> None:
    lo = case.grouped(case.x.detach().double()).amin(dim=-1).clamp(max=0)
    quotient = -lo / ref_scale.double()
    bad = code_mismatch(zero_point, ref_zero_point, quotient)
    if not bool(bad.any()):
        return
    variants = _zero_point_variants(case, ref_scale)
    mistake = first_match(variants, lambda c: code_mismatch(zero_point, c, quotient))
    at = index_of(bad)
    generic = (
        f"for group {at[-1]} of token {at[:-1]} expected round(-lo / scale) = {int(ref_zero_point[at])}, got "
        f"{int(zero_point[at])}"
    )
    raise CheckFailed(f"{case.what}: zero_point is wrong: {mistake or generic}")


# --- codes -------------------------------------------------------------------------------------------------


_NO_CLAMP = (
    "the clamp to [0, L] is missing: round(x / scale) + zero_point reached L + 1 (both roundings went up), "
    "which wrapped around in uint8; clamp(round(x / scale) + zero_point, 0, L)"
)


def _code_variants(case: _Case, scale: Tensor, zp: Tensor) -> dict[str, Tensor | None]:
    """Wrong codes, given the right scale and the learner's zero-point (both per channel, [..., T, D])."""
    x32, levels = case.x.detach().float(), case.levels
    q = x32 / scale
    lo = case.per_group(case.grouped(x32).amin(dim=-1).clamp(max=0))
    low = case.x.dtype != torch.float32
    cands = {
        "x / scale was truncated (a cast without torch.round): round to the nearest code": q.trunc() + zp,
        "x / scale was rounded down with torch.floor: round to the nearest code (torch.round)": q.floor()
        + zp,
        "the zero_point was not added: codes = clamp(round(x / scale) + zero_point, 0, L)": q.round(),
        "codes were computed as round((x - lo) / scale), KIVI's formula: with a zero-point, round x / scale "
        "and add the integer zero_point (the two differ by one code where the roundings disagree)": (
            (x32 - lo) / scale
        ).round(),
        f"x / scale was computed in {case.x.dtype}, whose rounding moves codes near a half: compute in "
        "float32 (x.float())": torch.round(case.x.detach() / scale.to(case.x.dtype)).float() + zp
        if low
        else None,
    }
    out: dict[str, Tensor | None] = {m: None if c is None else c.clamp(0, levels) for m, c in cands.items()}
    wrapped = (q.round() + zp).to(torch.uint8).float()  # 256 -> 0: what the cast does without the clamp
    out[_NO_CLAMP] = wrapped
    return out


def _check_codes(
    case: _Case, codes: Tensor, ref_scale: Tensor, zero_point: Tensor, scale: Tensor, hint: str
) -> None:
    x, levels = case.x, case.levels
    s, zp = case.per_group(ref_scale), case.per_group(zero_point.float())  # (..., T, D)
    quotient = x.detach().double() / s.double()
    expected = (torch.round(x.detach().float() / s) + zp).clamp(0, levels)
    bad = code_mismatch(codes, expected, quotient)
    if bool(bad.any()):
        mistake = first_match(_code_variants(case, s, zp), lambda c: code_mismatch(codes, c, quotient))
        if mistake:
            raise CheckFailed(f"{case.what}: codes are wrong: {mistake}")
    top = int(codes.max()) if codes.numel() else 0
    expect(
        top <= levels,
        f"{case.what}: codes must lie in [0, L] = [0, {levels}], got a code {top}: round(x / scale) + "
        "zero_point can come out one past L (both roundings go up); clamp(..., 0, L) before the cast",
    )
    x_hat = (codes.double() - zp.double()) * case.per_group(scale.double())
    assert_within_half_step(x, x_hat, case.per_group(scale), case.what, "(codes - zero_point) * scale", hint)
    if bool(bad.any()):
        at = index_of(bad)
        raise CheckFailed(
            f"{case.what}: codes are wrong at index {at}: expected clamp(round(x / scale) + zero_point, 0, "
            f"L) = {int(expected[at])}, got {int(codes[at])}" + (f"; {hint}" if hint else "")
        )


# --- cases -------------------------------------------------------------------------------------------------


def _readable() -> Tensor:
    """[2, 8], G = 4: a mixed group, an all-positive one, a group of zeros and a constant negative one."""
    return torch.tensor(
        [[-1.0, 0.44, 2.0, 1.13, 3.0, 1.0, 0.55, 1.62], [0.0, 0.0, 0.0, 0.0, -2.0, -2.0, -2.0, -2.0]]
    )


def _offset(gen: torch.Generator, group_size: int, *shape: int) -> Tensor:
    """Tokens of varied magnitude whose groups are shifted by -3, 0 or +3 of it: many all-positive and
    all-negative groups (where widening the range to 0 matters), distinct in every batch row."""
    size = torch.exp(torch.rand(*shape[:-1], 1, generator=gen) * 6 - 3)  # (..., T, 1), 0.05 .. 20
    shift = (
        torch.randint(-1, 2, (*shape[:-1], shape[-1] // group_size), generator=gen) * 3.0
    ).repeat_interleave(group_size, dim=-1)
    return (torch.randn(*shape, generator=gen) + shift) * size


def _overflow_group(bits: int) -> Tensor:
    """[2, 8], G = 4, scale exactly 1: lo = -1.5 gives zero_point round(1.5) = 2 and hi = L - 1.5 rounds up
    to L - 1, so round(x / scale) + zero_point = L + 1 without the clamp (mirrored in token 1)."""
    top = 2**bits - 1 - 1.5
    return torch.tensor(
        [[-1.5, top, 0.2, -0.7, 0.3, -0.1, 0.25, 0.6], [1.5, -top, -0.2, 0.7, 0.0, 0.0, 0.0, 0.0]]
    )


@graded("quantize_groups", *REFERENCES)
def quantize_groups_visible(fn: Callable[..., Any]) -> None:
    """A batch [2, 3, 5, 16] with G = 4 (default bits), G = 8 at 2 bits, then a readable [2, 8] input."""
    gen = generator(41)
    _check_case(fn, _Case(_offset(gen, 4, 2, 3, 5, 16), 4, style="default", note="a batch of 2, 3 KV heads"))
    _check_case(fn, _Case(_offset(gen, 8, 2, 6, 32), 8, 2, note="a batch of 2 at 2 bits"))
    note = "groups [-1, .44, 2, 1.13] and [3, 1, .55, 1.62], then zeros and a constant -2"
    _check_case(fn, _Case(_readable(), 4, note=note))
    print("quantize_groups: visible tests passed")


def _hidden_shapes(fn: Callable[..., Any], gen: torch.Generator) -> None:
    for shape, g, bits, note in [
        ((7, 24), 6, 4, "2-D: one sequence, no batch or head axis"),
        ((3, 5, 40), 8, 2, "3-D: [B, T, D]"),
        ((2, 4, 9, 64), 32, 8, "[B, KV, T, D] at 8 bits"),
        ((2, 2, 6, 16), 16, 4, "group_size == D: one group per token"),
        ((2, 3, 5, 12), 1, 2, "group_size 1: every channel its own group"),
        ((2, 1, 2, 5, 8), 2, 4, "5-D: two leading axes"),
        ((1, 2, 33, 20), 5, 8, "33 tokens, groups of 5"),
        ((2, 2, 16, 16), 4, 2, "T == D"),
    ]:
        _check_case(fn, _Case(_offset(gen, g, *shape), g, bits, note=note))
    _check_case(fn, _Case(_offset(gen, 4, 2, 2, 3, 8), 4, 2, "keywords", "group_size and bits by name"))
    _check_case(fn, _Case(_offset(gen, 6, 3, 4, 24), 6, 4, "default", "bits left at its default, 4"))


def _hidden_edges(fn: Callable[..., Any], gen: torch.Generator) -> None:
    for bits in (2, 4, 8):
        note = "a group whose top code, before the clamp, is L + 1"
        _check_case(fn, _Case(_overflow_group(bits), 4, bits, note=note))
    x = _offset(gen, 6, 3, 4, 24)
    x[0, 1, 0:6] = 0.0  # a group of zeros: scale 1.0
    x[1, 2, 6:12] = 0.37  # constant positive: codes L, zero_point 0
    x[1, 3, 12:18] = -2.5  # constant negative: codes 0, zero_point L
    x[2, 0] = 0.0
    x[2, 0, 17] = 4.0  # one non-zero value in a token
    for bits in (2, 4, 8):
        _check_case(fn, _Case(x, 6, bits, note="zeros, constant and one-hot groups"))


def _hidden_dtypes(fn: Callable[..., Any], gen: torch.Generator) -> None:
    span = (randn(gen, 2, 2, 5, 16) * 3e4).clamp(-65504, 65504)
    span[..., 0], span[..., 1] = 6e4, -6e4  # hi - lo = 1.2e5 in the first group of every token
    _check_case(
        fn,
        _Case(span.to(torch.float16), 4, note="float16 groups from -6e4 to 6e4"),
        "in float16, hi - lo overflows past 65504: compute in float32 (x.float())",
    )
    for dtype in (torch.float16, torch.bfloat16):
        _check_case(fn, _Case(_offset(gen, 8, 2, 3, 7, 32).to(dtype), 8, 4, note=f"{dtype} input"))
    transposed = _offset(gen, 4, 2, 7, 3, 16).transpose(1, 2)  # [B, T, KV, D] -> [B, KV, T, D]
    _check_case(fn, _Case(transposed, 4, 4, note="a transposed cache tensor"))


def _check_raises(fn: Callable[..., Any], x: Tensor, group_size: int) -> None:
    what = f"quantize_groups(x, {group_size}) for x of shape {tuple(x.shape)}"
    rule = f"group_size {group_size} does not divide D = {x.shape[-1]}: raise ValueError"
    try:
        fn(x.clone(), group_size)
    except ValueError:
        return
    except NotImplementedError:
        raise CheckFailed(f"{what} is not implemented yet (it raised NotImplementedError)") from None
    except Exception as exc:  # noqa: BLE001 - any other error is the wrong one
        raise CheckFailed(f"{what} raised {type(exc).__name__} ({exc}); {rule} yourself") from None
    raise CheckFailed(f"{what} returned without an error, but {rule} (do not drop the leftover channels)")


def _hidden_no_aliasing(fn: Callable[..., Any], gen: torch.Generator) -> None:
    first = _check_case(
        fn, _Case(_offset(gen, 4, 2, 3, 6, 16), 4, note="first of two calls of the same shape")
    )
    copy = snapshot(first)
    _check_case(fn, _Case(_offset(gen, 4, 2, 3, 6, 16), 4, note="second of two calls of the same shape"))
    assert_unchanged(
        first,
        copy,
        "the codes, scale or zero_point returned by quantize_groups",
        "they share memory with a buffer your function reuses; return new tensors from every call",
    )


@graded("quantize_groups", *REFERENCES)
def quantize_groups_hidden(fn: Callable[..., Any]) -> None:
    """Leading axes, G in {1, odd, D}, bits 2/4/8 and its default, edge groups, the clamp, fp16/bf16,
    non-contiguous input, ValueError for a G that does not divide D, no aliasing."""
    gen = generator(405)
    _hidden_shapes(fn, gen)
    _hidden_edges(fn, gen)
    _hidden_dtypes(fn, gen)
    _check_raises(fn, randn(gen, 2, 3, 24), 5)
    _check_raises(fn, randn(gen, 2, 3, 8), 16)
    _hidden_no_aliasing(fn, gen)
    print("quantize_groups: hidden tests passed")
