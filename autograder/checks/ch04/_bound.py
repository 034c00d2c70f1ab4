"""What every quantizer exercise of chapter 04 shares: round to nearest, so x_hat lies within scale / 2 of x.

Used by the checks of `quantize_int8` (int8.py), `quantize_groups` (groups.py) and the fixed `quantize_kv`
(find_bugs.py, exercise 1 at 8 or 4 bits):

- :func:`assert_within_half_step`: the error bound ``|x - x_hat| <= scale / 2``, elementwise, with a
  message naming the worst element (its index, x, x_hat and the error in half-steps);
- :func:`near_tie` and :func:`code_mismatch`: codes compared with the reference's, forgiving only a code
  off by one where ``x / scale`` sits within :data:`TIE` of ``k + 0.5`` (float32 against float64, a
  reciprocal multiply or round-half-up may legitimately round such an element the other way);
- :func:`scale_mismatch`: scales compared with a relative tolerance of :data:`SCALE_RTOL` (a float64
  detour cast back to float32 is one ulp off; a scale computed in fp16 or bf16 is ~1e-3 off);
- :func:`check_symmetric`: the whole check of one symmetric per-token result ``(codes int8 [..., T, D],
  scale float32 [..., T, 1])`` with ``qmax`` 127 or 7 against a reference, diagnosing the classic
  mistakes (truncation, floor, qmax + 1, max of x instead of |x|, a per-tensor scale, fp16 arithmetic,
  the int8 cast before the division, no guard for a token of zeros).

Every comparison runs in float64 on the learner's own outputs, so a tolerance never hides a mistake of
a whole step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..common import CheckFailed, assert_shape, expect
from ..properties import assert_dtype

TIE = 1e-4  # distance from k + 0.5, in steps, where either rounding is correct (float32 quotients <= 255)
SCALE_RTOL = 2e-6  # ~16 float32 ulps: a float64 detour passes, an fp16 (5e-4) or bf16 (4e-3) scale fails
BOUND_SLACK = 1e-4  # of a half-step: float rounding at an exact tie; a wrong code is off by a whole step


def index_of(mask: Tensor) -> tuple[int, ...]:
    """The index of the first True element of `mask`."""
    return tuple(int(i) for i in torch.nonzero(mask)[0])


def assert_within_half_step(
    x: Tensor, x_hat: Tensor, step: Tensor, what: str, formula: str = "codes * scale", hint: str = ""
) -> None:
    """Fail unless ``|x - x_hat| <= step / 2`` in every element (float64; ``step`` broadcasts to x).

    The message names the worst element: its index, x, the dequantized value and the error measured in
    half-steps, so a learner can recompute that one element by hand.
    """
    x64, x_hat64 = x.detach().double(), x_hat.detach().double()
    half = (step.detach().double() / 2).expand_as(x64)
    ratio = (x64 - x_hat64).abs() / half
    ratio = torch.where(torch.isnan(ratio), torch.full_like(ratio, float("inf")), ratio)
    if x64.numel() == 0 or bool((ratio <= 1 + BOUND_SLACK).all()):
        return
    worst = index_of(ratio == ratio.max())
    raise CheckFailed(
        f"{what}: {formula} must be within scale / 2 of x in every element (round to the nearest code), "
        f"but at index {worst} x = {x64[worst].item():.6g}, {formula} = {x_hat64[worst].item():.6g}: the "
        f"error {abs(x64[worst] - x_hat64[worst]).item():.3g} is {ratio[worst].item():.3g} x scale / 2 "
        f"(scale / 2 = {half[worst].item():.3g})" + (f"; {hint}" if hint else "")
    )


def near_tie(quotient: Tensor) -> Tensor:
    """True where ``quotient`` (x / scale, float64) is within TIE of a half-integer k + 0.5."""
    return ((quotient - quotient.floor()) - 0.5).abs() < TIE


def code_mismatch(codes: Tensor, expected: Tensor, quotient: Tensor) -> Tensor:
    """Where `codes` differ from `expected` by more than a tie allows (off by one at a near tie)."""
    diff = (codes.double() - expected.double()).abs()
    return (diff > 1) | ((diff == 1) & ~near_tie(quotient))


def scale_mismatch(scale: Tensor, expected: Tensor) -> Tensor:
    """Where `scale` is not within SCALE_RTOL of `expected` (NaN counts as a mismatch)."""
    s, e = scale.detach().double(), expected.detach().double()
    return ~((s == e) | ((s - e).abs() <= SCALE_RTOL * e.abs()))  # s == e: an inf reproduced is a match


def first_match(candidates: dict[str, Tensor | None], wrong: Callable[[Tensor], Tensor]) -> str | None:
    """The first message whose candidate `wrong(candidate)` finds nothing wrong with (diagnosis)."""
    for message, candidate in candidates.items():
        if candidate is not None and not bool(wrong(candidate).any()):
            return message
    return None


# --- symmetric per-token quantization (exercise 1; quantize_kv at 8 and 4 bits) ----------------------------

_FLOAT32_SCALE = (
    "keep the scale in float32 even for fp16/bf16 x (an fp16 scale is rounded, and a rounded-down scale "
    "pushes the largest value off the grid)"
)


def _scale_shape_hint(got: tuple[int, ...], x_shape: tuple[int, ...]) -> str:
    *lead, t, d = x_shape
    if got == (*lead, t):
        return "keep the reduced axis: x.abs().amax(dim=-1, keepdim=True), so scale broadcasts over D"
    if got == (*lead, 1, d) and t != 1:
        return "the max must run over each token's D values (dim=-1), not over the tokens (dim=-2)"
    if len(got) <= 2 and all(n == 1 for n in got) or got == (*lead, 1, 1):
        return "one scale per token (max over dim=-1 only), not one for the whole tensor or head"
    return "one scale per token: x.abs().amax(dim=-1, keepdim=True) / qmax"


def _scale_variants(x: Tensor, qmax: int) -> dict[str, Tensor | None]:
    x32 = x.detach().float()
    absmax = x32.abs().amax(dim=-1, keepdim=True)  # (..., T, 1)
    whole = torch.ones_like(absmax) * x32.abs().amax()
    first_row = x32[:1].abs().amax(dim=-1, keepdim=True).expand_as(absmax) if x.dim() > 2 else None
    low_precision = x.dtype != torch.float32
    in_dtype = (x.detach().abs().amax(dim=-1, keepdim=True) / qmax).float() if low_precision else None
    mean = x32.abs().mean(dim=-1, keepdim=True)
    return {
        f"the scale must be max|x| / {qmax}, not / {qmax + 1}: the restricted range [-{qmax}, {qmax}] "
        "keeps +max and -max on the grid": absmax / (qmax + 1),
        f"the scale must be max|x| / {qmax}, not / {2 * qmax + 1}: that is the unsigned range; symmetric "
        f"codes run from -{qmax} to {qmax}": absmax / (2 * qmax + 1),
        "the scale uses max(x), not max(|x|): a token whose largest magnitude is negative gets a scale "
        "that is too small (or negative)": x32.amax(dim=-1, keepdim=True) / qmax,
        "the scale uses the mean of |x|, not its max: the largest values then fall off the grid": mean / qmax,
        "one scale for the whole tensor: there must be one per token (max over dim=-1 only)": whole / qmax,
        "the scales of the first sequence were used for every row of the batch: compute them from each "
        "row (max over dim=-1, keepdim=True, no [0])": None if first_row is None else first_row / qmax,
        f"the scale was computed in {x.dtype}, which rounds it: compute max|x| / {qmax} in float32 "
        "(x.float() first)": in_dtype,
    }


def _code_variants(x: Tensor, scale: Tensor, qmax: int) -> dict[str, Tensor | None]:
    x32 = x.detach().float()
    q = x32 / scale
    low_precision = x.dtype != torch.float32
    in_dtype = torch.round(x.detach() / scale.to(x.dtype)).float() if low_precision else None
    largest = torch.finfo(x.dtype).max
    absmax = x.detach().abs().amax(dim=-1, keepdim=True)
    product = torch.round(x.detach() * qmax / absmax).float() if low_precision else None
    cands = {
        "x / scale was truncated toward zero (.to(torch.int8) or .int() without torch.round): round to the "
        "nearest code with torch.round, then cast": q.trunc(),
        "x / scale was rounded down with torch.floor: round to the nearest code (torch.round)": q.floor(),
        "x / scale was rounded up with torch.ceil: round to the nearest code (torch.round)": q.ceil(),
        "x was cast to int8 before the division, which truncates every value to a whole number: divide the "
        "float values by scale, round, and cast at the very end": torch.round(
            x.detach().to(torch.int8).float() / scale
        ),
        f"x / scale was computed in {x.dtype}, whose rounding moves codes near a half: compute in float32 "
        "(x.float() / scale) and cast at the very end": in_dtype,
        f"x * {qmax} / max|x| was computed in {x.dtype}: it rounds, and x * {qmax} overflows past "
        f"{largest:g} once |x| > {largest / qmax:.3g}; compute in float32 (x.float())": product,
    }
    return {m: None if c is None else c.clamp(-qmax, qmax) for m, c in cands.items()}


def _check_zero_tokens(scale: Tensor, x: Tensor, what: str) -> None:
    """A token of zeros gets scale 1.0 (then its codes are 0, checked with every other code)."""
    zeros = (x == 0).all(dim=-1, keepdim=True)  # (..., T, 1)
    if not bool(zeros.any()):
        return
    s = scale.detach().double()[zeros]
    broken = torch.isnan(s) | (s == 0)
    if bool(broken.any()):
        raise CheckFailed(
            f"{what}: a token whose values are all zero got scale {s[broken][0].item()}: max|x| = 0 there, "
            "and 0 / 0 is NaN; give such a token scale 1.0 (e.g. torch.where(absmax > 0, absmax / qmax, "
            "1.0)) so its codes are 0"
        )
    if bool((s != 1.0).any()):
        raise CheckFailed(
            f"{what}: a token whose values are all zero must get scale 1.0 (the docstring's guard), got "
            f"{s[s != 1.0][0].item():.3g}; a clamp(min=eps) or + eps changes the scale: use "
            "torch.where(absmax > 0, absmax / qmax, torch.ones_like(absmax))"
        )


def check_symmetric(
    result_codes: object,
    result_scale: object,
    x: Tensor,
    qmax: int,
    reference: tuple[Tensor, Tensor],
    what: str,
    hint: str = "",
) -> None:
    """Check one symmetric per-token result against `reference` = (codes int8, scale float32 [..., T, 1]).

    `what` names the call and the input ("quantize_int8(x) for x of shape (2, 5, 16) float16"); `hint`
    is appended when the codes are wrong and no classic mistake explains them (e.g. an fp16 overflow).
    """
    codes, scale = result_codes, result_scale
    ref_codes, ref_scale = reference
    shape = tuple(x.shape)
    got = tuple(getattr(scale, "shape", ()))
    expect(
        not (got == shape and tuple(getattr(codes, "shape", ())) == (*shape[:-1], 1) and shape[-1] != 1),
        f"{what}: the result looks like (scale, codes): return them in the order (codes, scale)",
    )
    assert_shape(scale, (*shape[:-1], 1), f"{what}: scale", _scale_shape_hint(got, shape))
    assert_dtype(scale, torch.float32, f"{what}: scale", _FLOAT32_SCALE)
    assert_shape(codes, shape, f"{what}: codes", "one code per element of x: [..., T, D]")
    expect(
        codes.dtype != torch.uint8,
        f"{what}: codes must be torch.int8, got torch.uint8, which cannot hold negative codes",
    )
    assert_dtype(codes, torch.int8, f"{what}: codes", "round, then cast with .to(torch.int8)")
    _check_scale(scale, x, qmax, ref_scale, what)
    _check_codes(codes, scale, x, qmax, ref_codes, what, hint)


def _check_scale(scale: Tensor, x: Tensor, qmax: int, ref_scale: Tensor, what: str) -> None:
    """Scale against the reference; a classic mistake is diagnosed from the tokens that are not all zero
    (whose scale is a separate sentence of the spec, checked by _check_zero_tokens)."""
    bad = scale_mismatch(scale, ref_scale)
    nonzero = ~(x == 0).all(dim=-1, keepdim=True)  # (..., T, 1)
    if bool((bad & nonzero).any()):
        mistake = first_match(_scale_variants(x, qmax), lambda c: scale_mismatch(scale, c) & nonzero)
        if mistake:
            raise CheckFailed(f"{what}: scale is wrong: {mistake}")
    _check_zero_tokens(scale, x, what)
    if bool(bad.any()):
        at = index_of(bad)
        raise CheckFailed(
            f"{what}: scale is wrong at token {at[:-1]}: expected max|x| / {qmax} = "
            f"{ref_scale[at].item():.6g}, got {scale[at].item():.6g}"
        )


def _check_codes(
    codes: Tensor, scale: Tensor, x: Tensor, qmax: int, ref_codes: Tensor, what: str, hint: str
) -> None:
    low, high = int(codes.min()) if codes.numel() else 0, int(codes.max()) if codes.numel() else 0
    quotient = x.detach().double() / scale.detach().double()
    bad = code_mismatch(codes, ref_codes, quotient)
    if bool(bad.any()):
        mistake = first_match(
            _code_variants(x, scale.detach(), qmax), lambda c: code_mismatch(codes, c, quotient)
        )
        if mistake:
            raise CheckFailed(f"{what}: codes are wrong: {mistake}")
    expect(
        -qmax <= low and high <= qmax,
        f"{what}: codes must lie in [-{qmax}, {qmax}], got a code {low if low < -qmax else high}: clamp "
        "after rounding (the restricted range, so negating x negates its codes)",
    )
    assert_within_half_step(x, codes.double() * scale.double(), scale, what, hint=hint)
    if bool(bad.any()):
        at = index_of(bad)
        raise CheckFailed(
            f"{what}: codes are wrong at index {at}: expected round(x / scale) = {int(ref_codes[at])}, got "
            f"{int(codes[at])}" + (f"; {hint}" if hint else "")
        )
