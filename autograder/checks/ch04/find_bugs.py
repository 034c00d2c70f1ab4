"""Exercise 6: `bugs_found` (which statements about the printed quantizer are real bugs) and
`quantize_kv` (the quantizer with its three bugs fixed: exercise 1 for keys and values, at 8 or 4 bits).

`quantize_kv`'s keys and values are each checked like exercise 1 (`_bound.check_symmetric`, with
qmax 127 or 7), after the mistakes only this exercise can make: a 4-bit branch that returns two values,
`bits` ignored, no ValueError for other widths, k and v swapped, the values quantized with the keys'
scale.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..common import CheckFailed, call, expect, shown
from ..delegation import graded
from ..fixtures import generator, randn
from ..properties import assert_no_nan_cast, assert_unchanged, call_pure, snapshot
from ._bound import check_symmetric, scale_mismatch

# --- bugs_found ------------------------------------------------------------------------------------

# No kvlib function answers a question by value: the fixed quantizer is what a learner could run to
# tell the real bugs from the false ones, so it is what counts as handing in kvlib's work here.
BUGS_REFERENCES = ("kvlib.quant.quantize_kv",)

LETTERS = "ABCDEFG"
REAL_BUGS = {
    "A": "A is a real bug: k.to(torch.int8) turns every key into a whole number before it is scaled, so a "
    "key below 1 in magnitude becomes 0 (the printout: a relative error near 1 and most codes 0)",
    "C": "C is a real bug: at 4 bits the printed function returns only (k_codes, k_scale) (the printout: "
    "'4 bits returns 2 values'), so unpacking four values fails and the values are never quantized",
    "E": "E is a real bug: a token of zeros has max|x| = 0, so its scale is 0 and 0 / 0 gives NaN (the "
    "printout's last line); nothing in the printed function guards against it",
}
NOT_BUGS = {
    "B": "B is not a bug: the max of |x| is what puts every value of the token on the grid (and gives the "
    "bound |x - x_hat| <= scale / 2); with the mean, the largest values would be clipped",
    "D": "D is not a bug: with qmax = 127 the largest |x| of a token maps exactly to the code 127, so 127 is "
    "reached; 128 is outside the symmetric range [-127, 127]",
    "F": "F is not a bug: per-token keys are a correct quantizer (exercise 1 meets its error bound per "
    "token); KIVI quantizes keys per channel for accuracy at few bits, not because per token is wrong",
    "G": "G is not a bug: torch.round's round-half-to-even is the unbiased rule; floor(x + 0.5) rounds every "
    "half up, which is the biased one",
}


def _letter(item: Any) -> str:
    expect(
        isinstance(item, str),
        f"bugs_found must return a set of letters (str) such as {{'A', 'B'}}, got an element "
        f"{shown(item)} of type {type(item).__name__}",
    )
    letter = item.strip().strip("().").strip().upper()
    expect(
        len(letter) == 1 and letter in LETTERS,
        f"bugs_found: {item!r} is not one of the statement letters A to G (one letter per element)",
    )
    return letter


def letters(fn: Callable[..., Any]) -> set[str]:
    """The learner's answer as a set of upper-case letters; any case and surrounding spaces accepted."""
    got = call(fn, what="bugs_found")
    if isinstance(got, str):
        raise CheckFailed(
            f"bugs_found must return a set of letters such as {{'A', 'B'}}, not one string ({got!r}): "
            f"write {{{', '.join(repr(c) for c in got.strip()[:3])}}} or set({got!r})"
        )
    if isinstance(got, (list, tuple)):
        raise CheckFailed(
            f"bugs_found must return a set, got a {type(got).__name__} {shown(got)}: the order of the "
            "letters means nothing, so return {...} or set(...) as the docstring asks"
        )
    expect(
        isinstance(got, (set, frozenset)),
        f"bugs_found must return a set of letters such as {{'A', 'B'}}, got {type(got).__name__} "
        f"{shown(got)}",
    )
    return {_letter(item) for item in got}


@graded("bugs_found", *BUGS_REFERENCES)
def bugs_found_visible(fn: Callable[..., Any]) -> None:
    """The answer is a set of statement letters A to G (its content is checked by the hidden tests)."""
    letters(fn)
    print("bugs_found: visible tests passed")


@graded("bugs_found", *BUGS_REFERENCES)
def bugs_found_hidden(fn: Callable[..., Any]) -> None:
    """Each statement in turn: the real bugs are in the set, the false statements are not."""
    got = letters(fn)
    for letter in LETTERS:
        if letter in REAL_BUGS:
            expect(letter in got, f"bugs_found: {REAL_BUGS[letter]}; it belongs in the set")
        else:
            expect(letter not in got, f"bugs_found: {NOT_BUGS[letter]}; leave it out of the set")
    print("bugs_found: hidden tests passed")


# --- quantize_kv -----------------------------------------------------------------------------------

KV_REFERENCES = (
    "kvlib.quant.quantize_kv",
    "kvlib.quant.quantize_int8",  # imported by the setup cell: the 8-bit half of the answer
    "kvlib.quant.quantize",  # imported by the setup cell: quantize(x, bits, "symmetric") is the answer
    "kvlib.quant._symmetric_per_token",
)

_RETURNS = "(k_codes, k_scale, v_codes, v_scale)"


def _reference(k: Tensor, v: Tensor, bits: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    from kvlib.quant import quantize_kv

    return quantize_kv(k, v, bits)


def _name(x: Tensor) -> str:
    return f"{tuple(x.shape)} {str(x.dtype).removeprefix('torch.')}"


def _describe(k: Tensor, v: Tensor, call_form: str, note: str) -> str:
    same = k.shape == v.shape and k.dtype == v.dtype
    shapes = f"k and v {_name(k)}" if same else f"k {_name(k)}, v {_name(v)}"
    return f"{call_form} for {shapes}" + (f" ({note})" if note else "")


def _four(result: Any, bits: int, what: str) -> tuple[Any, Any, Any, Any]:
    if isinstance(result, (tuple, list)) and len(result) == 2 and bits == 4:
        raise CheckFailed(
            f"{what} returned 2 values; it must return {_RETURNS} at both bit widths (the printed version's "
            "4-bit branch quantizes only the keys: bug C)"
        )
    expect(
        isinstance(result, (tuple, list)) and len(result) == 4,
        f"{what} must return the 4 values {_RETURNS}, got {type(result).__name__}"
        + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else f" {shown(result)}"),
    )
    return tuple(result)


def _absmax(x: Tensor) -> Tensor:
    return x.detach().float().abs().amax(dim=-1, keepdim=True)  # (..., T, 1)


def _same(a: Any, b: Tensor, where: Tensor | None = None) -> bool:
    """`a` is a tensor of b's shape whose values match b's (scale tolerance), everywhere or `where`."""
    if not isinstance(a, Tensor) or a.shape != b.shape:
        return False
    wrong = scale_mismatch(a, b)
    return not bool((wrong if where is None else wrong & where).any())


def _swapped(out: tuple, ref: tuple) -> bool:
    """k's results where v's belong and v's where k's belong (only meaningful when k and v differ)."""
    k_codes, k_scale, v_codes, v_scale = out
    shapes = [getattr(t, "shape", None) for t in out]
    if shapes[0] != shapes[2]:
        return shapes[0] == ref[2].shape and shapes[2] == ref[0].shape
    return _same(k_scale, ref[3]) and _same(v_scale, ref[1]) and not _same(k_scale, ref[1])


def _kv_mistakes(out: tuple, ref: tuple, k: Tensor, v: Tensor, bits: int, what: str) -> None:
    """The mistakes that involve both tensors or the bit width, before each is checked like exercise 1."""
    if _swapped(out, ref):
        raise CheckFailed(
            f"{what}: the keys' and the values' results are swapped: return {_RETURNS}, in that order"
        )
    qmax = 2 ** (bits - 1) - 1
    for label, x, scale in (("keys", k, out[1]), ("values", v, out[3])):
        absmax = _absmax(x)
        if bits == 4 and _same(scale, absmax / 127, absmax > 0):
            raise CheckFailed(
                f"{what}: the {label}' scale is max|x| / 127 at bits=4: qmax must follow bits, "
                "2**(bits - 1) - 1 = 7 at 4 bits (bits is ignored)"
            )
    v_codes, v_scale = out[2], out[3]
    if v.shape == k.shape and not _same(ref[1], ref[3]):
        if _same(v_scale, ref[1]):
            raise CheckFailed(
                f"{what}: v_scale equals the keys' scale: the values need their own, max|v| / {qmax} per "
                "token"
            )
        with_k_scale = torch.round(v.detach().float() / ref[1]).clamp(-qmax, qmax).to(torch.int8)
        if isinstance(v_codes, Tensor) and torch.equal(v_codes, with_k_scale):
            raise CheckFailed(
                f"{what}: the values were quantized with the keys' scale (v / k_scale): divide v by v_scale"
            )


def _check(
    fn: Callable[..., Any],
    k: Tensor,
    v: Tensor,
    bits: int | None,
    note: str = "",
    hint: str = "",
    keyword=False,
) -> tuple:
    """One call, in the form given: bits positional, bits= keyword, or the default (bits=None here)."""
    if bits is None:
        call_form, args, kwargs, bits = "quantize_kv(k, v)", (k, v), {}, 8
    elif keyword:
        call_form, args, kwargs = f"quantize_kv(k, v, bits={bits})", (k, v), {"bits": bits}
    else:
        call_form, args, kwargs = f"quantize_kv(k, v, {bits})", (k, v, bits), {}
    what = _describe(k, v, call_form, note)
    out = _four(call_pure(fn, *args, what=what, **kwargs), bits, what)
    ref = _reference(k, v, bits)
    _kv_mistakes(out, ref, k, v, bits, what)
    qmax = 2 ** (bits - 1) - 1
    check_symmetric(out[0], out[1], k, qmax, ref[:2], f"{what}, keys", hint)
    check_symmetric(out[2], out[3], v, qmax, ref[2:], f"{what}, values", hint)
    if any(bool((x == 0).all(dim=-1).any()) for x in (k, v)):  # a late guard casts 0 / 0, which x86 makes 0
        assert_no_nan_cast(lambda: call(fn, *args, what=what, **kwargs), what, "token")
    return out


def _keys_values(gen: torch.Generator, *shape: int, v_shape: tuple[int, ...] | None = None) -> tuple:
    """Keys larger than values (distinct scales), tokens whose sizes differ by up to 1e3, most |v| < 1."""
    k = torch.randn(*shape, generator=gen) * torch.exp(torch.rand(*shape[:-1], 1, generator=gen) * 4 - 1)
    vs = v_shape or shape
    v = torch.randn(*vs, generator=gen) * torch.exp(torch.rand(*vs[:-1], 1, generator=gen) * 4 - 4)
    return k, v


def _with_zero_tokens(k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """A token of zeros in the second sequence of the keys and in the last one of the values."""
    k, v = k.clone(), v.clone()
    k[1, ..., 2, :] = 0.0
    v[-1, ..., 0, :] = 0.0
    return k, v


@graded("quantize_kv", *KV_REFERENCES)
def quantize_kv_visible(fn: Callable[..., Any]) -> None:
    """A batch [2, 2, 5, 8] at 8 and 4 bits, with a token of zeros in each of k and v."""
    k, v = _with_zero_tokens(*_keys_values(generator(46), 2, 2, 5, 8))
    for bits in (8, 4):
        _check(fn, k, v, bits, "a batch of 2 with a token of zeros in k and in v")
    print("quantize_kv: visible tests passed")


def _expect_value_error(fn: Callable[..., Any], k: Tensor, v: Tensor, bits: int) -> None:
    what = f"quantize_kv(k, v, bits={bits})"
    try:
        out = fn(k.clone(), v.clone(), bits)
    except ValueError:
        return
    except NotImplementedError:
        raise CheckFailed("quantize_kv is not implemented yet (it raised NotImplementedError)") from None
    except Exception as exc:  # noqa: BLE001 - any other error names the one promised
        raise CheckFailed(
            f"{what} must raise ValueError (only 8 and 4 bits), got {type(exc).__name__}: {exc}"
        ) from None
    raise CheckFailed(
        f"{what} must raise ValueError (only 8 and 4 bits are supported), but it returned "
        f"{type(out).__name__}: check bits in (4, 8) before computing anything"
    )


def _hidden_shapes(fn: Callable[..., Any], gen: torch.Generator) -> None:
    for bits in (8, 4):
        for shape, v_shape, note in [
            ((7, 33), None, "2-D: one sequence, no batch or head axis"),
            ((3, 4, 17, 16), (3, 4, 17, 24), "k and v of different head_dim"),
            ((2, 3, 9, 8), (2, 3, 4, 8), "k and v of different lengths"),
            ((2, 1, 2, 6, 40), None, "5-D: two leading axes"),
            ((2, 2, 16, 16), None, "T == D: the max must run over dim=-1"),
        ]:
            _check(fn, *_keys_values(gen, *shape, v_shape=v_shape), bits, note, keyword=True)
    k, v = _keys_values(gen, 3, 2, 6, 12)
    k[0, 1] = -k[0, 1].abs()  # every key of that head negative: max(x) is not max|x|
    v[2, 0, 3] = 0.0
    v[2, 0, 3, 7] = -0.3  # one non-zero value: code -qmax, the rest 0
    _check(fn, *_with_zero_tokens(k, v), 4, "all-negative keys, a one-hot value token, tokens of zeros")


def _hidden_dtypes(fn: Callable[..., Any], gen: torch.Generator) -> None:
    for dtype in (torch.float16, torch.bfloat16):
        k, v = _keys_values(gen, 2, 3, 7, 32)
        for bits in (8, 4):
            _check(
                fn,
                k.to(dtype),
                v.to(dtype),
                bits,
                f"{str(dtype).removeprefix('torch.')} input: scales float32, codes int8",
            )
    big = (randn(gen, 2, 2, 5, 16) * 2e4).clamp(-65504, 65504).to(torch.float16)
    overflow = "in fp16, x * qmax overflows past 65504: compute in float32 (x.float())"
    _check(fn, big, big.flip(0), 8, "float16 values up to 6e4", overflow)
    transposed = _keys_values(gen, 2, 7, 3, 16)[0].transpose(1, 2)  # [B, T, KV, D] -> [B, KV, T, D]
    _check(fn, transposed, transposed * 0.1, 4, "a transposed (non-contiguous) cache tensor")


def _hidden_calls(fn: Callable[..., Any], gen: torch.Generator) -> None:
    k, v = _keys_values(gen, 2, 2, 5, 8)
    _check(fn, k, v, None, "bits left at its default, 8")
    for bits in (3, 2, 16):
        _expect_value_error(fn, k, v, bits)
    first = _check(fn, k, v, 4, "first of two calls with the same shapes")
    copy = snapshot(first)
    _check(fn, *_keys_values(gen, 2, 2, 5, 8), 4, "second of two calls with the same shapes")
    reused = "they share memory with a buffer your function reuses; return new tensors from every call"
    assert_unchanged(first, copy, "the codes or scales returned by quantize_kv", reused)


@graded("quantize_kv", *KV_REFERENCES)
def quantize_kv_hidden(fn: Callable[..., Any]) -> None:
    """Leading axes, k and v of different shapes, fp16/bf16, the default bits, ValueError, no aliasing."""
    gen = generator(406)
    _hidden_shapes(fn, gen)
    _hidden_dtypes(fn, gen)
    _hidden_calls(fn, gen)
    print("quantize_kv: hidden tests passed")
