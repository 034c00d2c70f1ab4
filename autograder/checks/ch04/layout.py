"""Exercise `layout_errors`: relative error of KIVI-scheme groups run per token and per channel.

The answer is two numbers, so every case is built to make a wrong answer visible: tensors with
outlier channels (per channel must win) and outlier tokens (per token must win) catch swapped axes
or keys; rows of different magnitude catch a norm taken per row; several groups along both axes
catch a group size ignored. When a number is wrong, the classic wrong variants (a symmetric or
widened range, 2**bits levels, truncation, strided groups, absolute, squared or mean-abs errors,
fp16 arithmetic, ...) are recomputed on the same input and the one matched is named.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..common import CheckFailed, expect, shown
from ..delegation import graded
from ..fixtures import generator, randn
from ..properties import call_pure

# kvlib's exercise-shaped reference, then the quantizer (and its dequantization) it is built on: a
# learner calling quantize(x, bits, "kivi", layout, G) hands in the same answer.
REFERENCES = ("kvlib.quant.layout_errors", "kvlib.quant.quantize", "kvlib.quant.QuantizedTensor")

LAYOUTS = ("per_token", "per_channel")
# A float64 or reordered formula may round a code differently where (x - lo) / scale sits on a .5
# tie: that moves the error by about 1e-6 relative; the closest wrong variant is ~1e-2 away.
RTOL = 2e-5


def _groups(x: Tensor, layout: str, group_size: int, how: str = "contiguous") -> tuple[Tensor, int]:
    """`x` viewed with one axis per group, and that axis. `how` builds the wrong groupings too."""
    *lead, T, D = x.shape
    G = group_size
    per_token = {
        "contiguous": (lambda: x.reshape(*lead, T, D // G, G), -1),
        "strided": (lambda: x.reshape(*lead, T, G, D // G), -2),  # channels d, d + D/G, ...
        "whole": (lambda: x.reshape(*lead, T, 1, D), -1),
    }
    per_channel = {
        "contiguous": (lambda: x.reshape(*lead, T // G, G, D), -2),
        "strided": (lambda: x.reshape(*lead, G, T // G, D), -3),  # tokens t, t + T/G, ...
        "whole": (lambda: x.reshape(*lead, 1, T, D), -2),
    }
    make, dim = (per_token if layout == "per_token" else per_channel)[how]
    return make(), dim


def _fake_quantize(groups: Tensor, dim: int, bits: int, rule: str = "kivi") -> Tensor:
    """Quantize and dequantize each group along `dim`: KIVI's rule, or a classic wrong one."""
    levels = {"levels_2_pow_bits": 2**bits, "symmetric_levels": 2 ** (bits - 1) - 1, "levels_15": 15}.get(
        rule, 2**bits - 1
    )
    lo, hi = groups.amin(dim=dim, keepdim=True), groups.amax(dim=dim, keepdim=True)
    if rule == "absmax":  # symmetric: [-max|x|, max|x|] on the same L steps
        hi = groups.abs().amax(dim=dim, keepdim=True)
        lo = -hi
    if rule == "widened":  # the range widened to include 0, as exercise 2 does
        lo, hi = lo.clamp(max=0), hi.clamp(min=0)
    scale = (hi - lo) / levels
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = (groups - lo) / scale
    q = torch.floor(q) if rule == "truncated" else torch.round(q)
    q = q.clamp(0, levels)
    return q * scale if rule == "no_min_added" else q * scale + lo


def _x_hat(
    x: Tensor, layout: str, bits: int, group_size: int, how: str = "contiguous", rule: str = "kivi"
) -> Tensor:
    groups, dim = _groups(x, layout, group_size, how)
    return _fake_quantize(groups, dim, bits, rule).reshape(x.shape)


def _measures(x: Tensor, x_hat: Tensor) -> dict[str, float]:
    """The right error ||x - x_hat|| / ||x|| and the classic wrong measures, by name."""
    e = x - x_hat
    rows = x.reshape(x.shape[0], -1) if x.dim() > 2 else x.reshape(1, -1)
    e_rows = e.reshape(rows.shape)
    return {
        "frobenius": (e.norm() / x.norm()).item(),
        "squared": (e.pow(2).sum() / x.pow(2).sum()).item(),
        "absolute": e.norm().item(),
        "rms": e.pow(2).mean().sqrt().item(),
        "mse": e.pow(2).mean().item(),
        "mean_abs": (e.abs().mean() / x.abs().mean()).item(),
        "elementwise": (e.abs() / x.abs()).mean().item(),
        "max_abs": (e.abs().max() / x.abs().max()).item(),
        "per_row": (e_rows.norm(dim=-1) / rows.norm(dim=-1)).mean().item(),
    }


_MEASURE_MISTAKES = {
    "squared": "that is the squared ratio ||x - x_hat||^2 / ||x||^2: take the square root (Frobenius norms)",
    "absolute": "that is the absolute error ||x - x_hat||: divide by ||x|| (a relative error)",
    "rms": "that is the root-mean-square error, not relative: divide ||x - x_hat|| by ||x||",
    "mse": "that is the mean squared error, not ||x - x_hat|| / ||x|| (Frobenius norms, a relative error)",
    "mean_abs": "that is mean|x - x_hat| / mean|x| (absolute values): use Frobenius norms, "
    "||x - x_hat|| / ||x|| (square root of the sum of squares)",
    "elementwise": "that is the mean of the elementwise |x - x_hat| / |x|: use Frobenius norms over the "
    "whole tensor, ||x - x_hat|| / ||x||",
    "max_abs": "that is max|x - x_hat| / max|x|: use Frobenius norms over the whole tensor",
    "per_row": "that is the mean of one relative error per batch row: take the norms over the whole tensor "
    "(all leading axes together), then divide once",
}

_RULE_MISTAKES = {
    "absmax": "your groups use a symmetric range [-max|x|, max|x|]; KIVI's scheme maps [min, max] of each "
    "group onto 0..L (lo = min(group), scale = (max - lo) / L)",
    "widened": "your groups widen the range to include 0 (exercise 2's zero-point rule); KIVI's scheme keeps "
    "lo = min(group) in float, with no widening",
    "levels_2_pow_bits": "you used L = 2**bits steps; there are 2**bits codes 0..L, so L = 2**bits - 1",
    "symmetric_levels": "you used L = 2**(bits - 1) - 1 (the symmetric qmax); here L = 2**bits - 1",
    "levels_15": "L must follow bits (L = 2**bits - 1); you used L = 15 (4 bits) whatever bits is",
    "truncated": "the codes are truncated (floor, .int() or .long()), not rounded to the nearest: use "
    "torch.round",
    "no_min_added": "x_hat forgot the group's minimum: x_hat = code * scale + lo",
}

_GROUPING_MISTAKES = {
    "strided": "{layout} groups must be neighbours ({what} g*G .. g*G + G - 1); your groups take every "
    "(n / G)-th {unit} (reshape to [..., n // G, G] with the group last, not [..., G, n // G])",
    "whole": "{layout} groups must hold group_size {unit}s; you grouped the whole {axis} axis at once "
    "(group_size ignored)",
}


def _variants(x: Tensor, bits: int, group_size: int, layout: str) -> dict[str, float]:
    """Message -> the value a classic mistake gives for `layout` on `x` (float32)."""
    right = _x_hat(x, layout, bits, group_size)
    out = {msg: _measures(x, right)[name] for name, msg in _MEASURE_MISTAKES.items()}
    for rule, msg in _RULE_MISTAKES.items():
        out[msg] = _measures(x, _x_hat(x, layout, bits, group_size, rule=rule))["frobenius"]
    words = (
        {"what": "channels", "unit": "channel", "axis": "D"}
        if layout == "per_token"
        else {"what": "tokens", "unit": "token", "axis": "T"}
    )
    for how, msg in _GROUPING_MISTAKES.items():
        out[msg.format(layout=layout, **words)] = _measures(x, _x_hat(x, layout, bits, group_size, how))[
            "frobenius"
        ]
    if x.dim() > 2 and x.shape[0] > 1:
        first = x[:1]
        out[
            "that is the error of the first batch row x[0] only: measure every row (and head) of x, whatever "
            "its leading axes"
        ] = _measures(first, _x_hat(first, layout, bits, group_size))["frobenius"]
    if layout == "per_channel":
        # [..., D, T] quantized per token then reshaped, not transposed, back to [..., T, D].
        xt = x.transpose(-1, -2)
        back = _x_hat(xt.contiguous(), "per_token", bits, group_size).reshape(x.shape)
        out[
            "the per-channel result was reshaped back to [..., T, D] without transposing: after quantizing "
            "x.transpose(-1, -2), transpose x_hat back"
        ] = _measures(x, back)["frobenius"]
    return out


def _nearest(value: float, variants: dict[str, float]) -> str | None:
    """The message of the variant closest to `value`, if it is within the tolerance."""
    near = [(abs(v - value), m) for m, v in variants.items() if _close(value, v)]
    return min(near)[1] if near else None


def _close(got: float, want: float) -> bool:
    return math.isclose(got, want, rel_tol=RTOL, abs_tol=1e-9)


def _as_float(value: Any, key: str, what: str) -> float:
    if isinstance(value, torch.Tensor):
        raise CheckFailed(
            f'layout_errors(...)["{key}"] for {what} is a tensor {shown(value)}: return a Python float '
            "(.item())"
        )
    expect(
        isinstance(value, float),  # numpy.float64 is a float
        f'layout_errors(...)["{key}"] for {what} must be a Python float, got {type(value).__name__} '
        f"{value!r:.60}",
    )
    return float(value)


def _answer(fn: Callable[..., Any], x: Tensor, bits: int, group_size: int, what: str) -> dict[str, Any]:
    try:
        got = call_pure(fn, x, bits, group_size, what="layout_errors")
    except CheckFailed as exc:
        hint = ""
        if "values to unpack" in str(exc):
            hint = "x may have any number of leading axes ([..., T, D]): unpack *lead, T, D = x.shape"
        elif "view" in str(exc) and "in place" not in str(exc):
            hint = "`.view` fails on a non-contiguous tensor (a transposed one): use `.reshape`"
        raise CheckFailed(f"{exc} (for {what})" + (f"; {hint}" if hint else "")) from None
    expect(
        isinstance(got, dict),
        f"layout_errors must return a dict {{'per_token': ..., 'per_channel': ...}} for {what}, got "
        f"{type(got).__name__}",
    )
    missing = [k for k in LAYOUTS if k not in got]
    expect(
        not missing,
        f"layout_errors's dict for {what} is missing the keys {missing} (got {sorted(map(str, got))}): use "
        "exactly 'per_token' and 'per_channel'",
    )
    return got


def _diagnosis(x: Tensor, bits: int, group_size: int, got: dict, want: dict) -> str:
    """Why a value is wrong: swapped keys, fp16 arithmetic, or the first classic variant it matches."""
    if _close(got["per_token"], want["per_channel"]) and _close(got["per_channel"], want["per_token"]):
        return (
            "the two numbers are swapped: per_token groups run along the channels of one token "
            "(x[..., t, g*G:(g+1)*G]), per_channel groups along the tokens of one channel "
            "(x[..., g*G:(g+1)*G, d])"
        )
    x32 = x.float()
    for layout in LAYOUTS:
        if _close(got[layout], want[layout]):
            continue
        if x.dtype != torch.float32:
            return (
                f"{layout}: expected {want[layout]:.6g}, got {got[layout]!r:.20}: did the arithmetic run in "
                f"{x.dtype}? Convert x to float32 first (x.float()): {x.dtype} keeps too few digits for the "
                "codes, and its norms overflow past 65504 (float16)"
            )
        if not math.isfinite(got[layout]):
            return (
                f"{layout}: got {got[layout]}: a constant group (all its values equal, such as a token of "
                "zeros) has max - lo = 0, and (x - lo) / 0 is NaN; give such a group any positive scale"
            )
        mistake = _nearest(got[layout], _variants(x32, bits, group_size, layout))
        if mistake:
            return f"{layout}: {mistake}"
        return (
            f"{layout}: expected {want[layout]:.6g}, got {got[layout]!r:.20}; quantize each group as "
            "clamp(round((x - lo) / scale), 0, L) * scale + lo with lo = min, scale = (max - lo) / L, then "
            "||x - x_hat|| / ||x|| over the whole tensor"
        )
    return ""


def _check_case(fn: Callable[..., Any], x: Tensor, bits: int, group_size: int, what: str) -> dict[str, float]:
    from kvlib.quant import layout_errors

    got = _answer(fn, x, bits, group_size, what)
    want = layout_errors(x.float(), bits, group_size)
    values = {}
    for key in LAYOUTS:
        value = got[key]
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()  # judge the number first, its type after
        values[key] = float(value) if isinstance(value, numbers.Real) else value
    if not all(isinstance(v, float) and _close(v, want[k]) for k, v in values.items()):
        if not all(isinstance(v, float) for v in values.values()):
            for key in LAYOUTS:
                _as_float(got[key], key, what)
        raise CheckFailed(
            f"layout_errors(x, bits={bits}, group_size={group_size}) is wrong for {what}: "
            + _diagnosis(x, bits, group_size, values, want)
        )
    for key in LAYOUTS:
        _as_float(got[key], key, what)
    return values


def _outliers(
    g: torch.Generator, shape: tuple[int, ...], axis: int, which: tuple[int, ...], size: float
) -> Tensor:
    """Normal values with a few channels (axis -1) or tokens (axis -2) offset far from the rest, like
    the outlier key channels KIVI measured."""
    x = randn(g, *shape)
    n = shape[axis]
    offset = torch.zeros(n)
    offset[list(which)] = size
    return x + (offset if axis == -1 else offset[:, None])


def _check_winner(got: dict[str, float], winner: str, what: str) -> None:
    loser = "per_token" if winner == "per_channel" else "per_channel"
    expect(
        got[winner] < got[loser],
        f"for {what}, {winner} must give the smaller error, got {got}: check which axis each layout's "
        "groups run along",
    )


@graded("layout_errors", *REFERENCES)
def layout_errors_visible(fn: Callable[..., Any]) -> None:
    """Outlier channels (per channel wins) and outlier tokens (per token wins), a batch of 2, 4 bits."""
    g = generator(40)
    x = _outliers(g, (2, 2, 8, 8), -1, (3,), 30.0)
    got = _check_case(fn, x, 4, 4, "keys [2, 2, 8, 8] with an outlier channel (4 bits, groups of 4)")
    _check_winner(got, "per_channel", "an outlier channel")
    x = _outliers(g, (2, 2, 8, 8), -2, (5,), 30.0)
    got = _check_case(fn, x, 4, 4, "values [2, 2, 8, 8] with an outlier token (4 bits, groups of 4)")
    _check_winner(got, "per_token", "an outlier token")
    print("layout_errors: visible tests passed")


def _hidden_cases(g: torch.Generator) -> list[tuple[Tensor, int, int, str, str | None]]:
    """(x, bits, group_size, what, the layout that must win or None)."""
    rows = randn(g, 3, 2, 24, 16) * torch.tensor([1.0, 10.0, 0.1])[:, None, None, None]  # rows of 3 sizes
    channels = _outliers(g, (2, 2, 24, 16), -1, (2, 11), 25.0)
    tokens = _outliers(g, (2, 3, 16, 24), -2, (0, 9), 25.0)
    transposed = randn(g, 2, 8, 3, 16).transpose(1, 2)  # [B, KV, T, D] as a model's k.transpose(1, 2)
    return [
        (channels, 2, 8, "keys [2, 2, 24, 16] with two outlier channels, 2 bits, groups of 8", "per_channel"),
        (tokens, 2, 8, "values [2, 3, 16, 24] with two outlier tokens, 2 bits, groups of 8", "per_token"),
        (channels, 8, 4, "keys [2, 2, 24, 16] with outlier channels, 8 bits, groups of 4", "per_channel"),
        (rows, 4, 8, "a batch of 3 rows of very different sizes [3, 2, 24, 16], 4 bits, groups of 8", None),
        (randn(g, 12, 36), 4, 6, "x [12, 36] (no leading axes, T != D), 4 bits, groups of 6", None),
        (
            randn(g, 3, 10, 15),
            2,
            5,
            "x [3, 10, 15] (one leading axis, D = 3 groups), 2 bits, groups of 5",
            None,
        ),
        (
            randn(g, 2, 1, 2, 8, 16),
            8,
            8,
            "x [2, 1, 2, 8, 16] (three leading axes), 8 bits, groups of 8",
            None,
        ),
        (randn(g, 1, 1, 4, 4), 4, 4, "x [1, 1, 4, 4] (one group per token and per channel), 4 bits", None),
        (transposed, 4, 4, "a non-contiguous x (k.transpose(1, 2) of [2, 8, 3, 16])", None),
        (channels * 1000, 4, 8, "keys with outlier channels times 1000 (a relative error)", "per_channel"),
    ]


def _check_constant_groups(fn: Callable[..., Any], g: torch.Generator) -> None:
    x = randn(g, 2, 2, 8, 8)
    x[0, 0, 4:] = 0.0  # four zero tokens: every group of both layouts there is constant
    x[1, 1, :, 5] = 2.5  # a channel constant over all tokens: its per-channel groups are constant
    x[1, 0, 2, :4] = -1.0  # one constant per-token group
    _check_case(fn, x, 4, 4, "x with constant groups (zero tokens, a constant channel)")


def _check_half_precision(fn: Callable[..., Any], g: torch.Generator) -> None:
    for dtype in (torch.float16, torch.bfloat16):
        x = _outliers(g, (2, 2, 16, 16), -1, (7,), 20.0).to(dtype)
        _check_case(fn, x, 8, 8, f"{dtype} keys [2, 2, 16, 16] at 8 bits (compute in float32)")
    # ||x|| is about 9e4: past fp16's largest value 65504, so a norm taken in fp16 is inf.
    big = (randn(g, 2, 2, 32, 16) * 2000).to(torch.float16)
    _check_case(fn, big, 4, 8, "float16 x of magnitude ~2000 (||x|| does not fit in float16)")


@graded("layout_errors", *REFERENCES)
def layout_errors_hidden(fn: Callable[..., Any]) -> None:
    """Winners on outlier channels and tokens at 2 and 8 bits, leading axes, T != D, several groups per
    axis, rows of different sizes, constant groups, fp16/bf16 computed in float32, Python floats."""
    g = generator(404)
    for x, bits, group_size, what, winner in _hidden_cases(g):
        got = _check_case(fn, x, bits, group_size, what)
        if winner:
            _check_winner(got, winner, what)
    _check_constant_groups(fn, g)
    _check_half_precision(fn, g)
    print("layout_errors: hidden tests passed")
