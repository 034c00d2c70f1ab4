"""Exercise `quantize_int8`: symmetric int8 codes with one float32 scale per token."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..common import CheckFailed, call, expect
from ..delegation import graded
from ..fixtures import generator, randn
from ..properties import assert_no_nan_cast, assert_unchanged, call_pure, snapshot
from ._bound import check_symmetric

REFERENCES = (
    "kvlib.quant.quantize_int8",
    "kvlib.quant.quantize",  # imported by the setup cell: quantize(x, 8, "symmetric") is the answer
    "kvlib.quant.quantize_kv",  # quantize_kv(x, x, 8)[:2] is too
    "kvlib.quant._symmetric_per_token",
)

_LEADING_AXES_HINT = (
    "x may have any number of leading axes ([T, D], [B, T, D], [B, KV, T, D], ...): reduce over dim=-1 "
    "and never unpack x.shape into a fixed number of names"
)


def _reference(x: Tensor) -> tuple[Tensor, Tensor]:
    from kvlib.quant import quantize_int8

    return quantize_int8(x)


def _describe(x: Tensor, note: str = "") -> str:
    contiguous = "" if x.is_contiguous() else " non-contiguous"
    return f"quantize_int8(x) for x of shape {tuple(x.shape)} {str(x.dtype).removeprefix('torch.')}" + (
        f"{contiguous}" + (f" ({note})" if note else "")
    )


def _check_case(fn: Callable[..., Any], x: Tensor, note: str = "", hint: str = "") -> tuple[Tensor, Tensor]:
    what = _describe(x, note)
    try:
        result = call_pure(fn, x, what=what)
    except CheckFailed as exc:
        if "raised" in str(exc) and x.dim() != 4:
            raise CheckFailed(f"{exc}; {_LEADING_AXES_HINT}") from None
        if "raised" in str(exc) and not x.is_contiguous():
            raise CheckFailed(f"{exc}; x can be non-contiguous (a transposed cache): use reshape") from None
        raise
    expect(
        isinstance(result, (tuple, list)) and len(result) == 2,
        f"{what} must return a pair (codes, scale), got {type(result).__name__}"
        + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else ""),
    )
    codes, scale = result
    check_symmetric(codes, scale, x, 127, _reference(x), what, hint)
    if bool((x == 0).all(dim=-1).any()):  # a late zero guard casts 0 / 0 and still gets codes 0 on x86
        assert_no_nan_cast(lambda: call(fn, x, what=what), what, "token")
    return codes, scale


def _readable() -> Tensor:
    """Token 0 has max|x| = 1.27 (scale 0.01, codes 127, -40, 5, 0); token 1 is all zeros."""
    return torch.tensor([[1.27, -0.4, 0.05, 0.0], [0.0, 0.0, 0.0, 0.0]])


@graded("quantize_int8", *REFERENCES)
def quantize_int8_visible(fn: Callable[..., Any]) -> None:
    """A batch [2, 3, 5, 16] of distinct tokens, then a readable [2, 4] input with a token of zeros."""
    _check_case(fn, randn(generator(40), 2, 3, 5, 16) * 3, "a batch of 2, 3 KV heads, 5 tokens")
    _check_case(fn, _readable(), "token 0 = [1.27, -0.4, 0.05, 0.0]: scale 0.01; token 1 all zeros")
    print("quantize_int8: visible tests passed")


def _varied(gen: torch.Generator, *shape: int) -> Tensor:
    """Random tokens whose magnitudes differ by up to 1e3 between tokens (a shared scale shows)."""
    size = torch.exp(torch.rand(*shape[:-1], 1, generator=gen) * 7 - 3.5)  # (..., T, 1), 0.03 .. 33
    return torch.randn(*shape, generator=gen) * size


def _edge_tokens(gen: torch.Generator) -> Tensor:
    """[3, 6, 24]: a token of zeros, one whose largest magnitude is negative, constant and one-hot tokens."""
    x = _varied(gen, 3, 6, 24)
    x[1, 2] = 0.0  # all zeros: scale 1.0, codes 0
    x[0, 1] = -x[0, 1].abs()  # every value negative: max(x) is not max|x|
    x[2, 3] = 0.37  # a constant token: every code 127
    x[2, 4] = 0.0
    x[2, 4, 5] = -2.5  # one non-zero value: code -127, the rest 0
    x[0, 5, ::2] = 0.0  # half zeros: not a token of zeros
    return x


def _hidden_shapes(fn: Callable[..., Any], gen: torch.Generator) -> None:
    for shape, note in [
        ((7, 33), "2-D: one sequence of 7 tokens, no batch or head axis"),
        ((3, 17, 40), "3-D: [B, T, D]"),
        ((2, 4, 9, 64), "[B, KV, T, D] with 9 tokens"),
        ((2, 2, 16, 16), "T == D: the max must still run over dim=-1"),
        ((2, 1, 2, 5, 8), "5-D: two leading axes before [KV, T, D]"),
        ((1, 2, 257, 12), "257 tokens"),
        ((3, 2, 1, 24), "one token per row"),
    ]:
        _check_case(fn, _varied(gen, *shape), note)
    _check_case(fn, _edge_tokens(gen), "a token of zeros, an all-negative token, constant and one-hot tokens")


def _hidden_dtypes(fn: Callable[..., Any], gen: torch.Generator) -> None:
    for dtype in (torch.float16, torch.bfloat16):
        _check_case(fn, _varied(gen, 2, 3, 7, 32).to(dtype), f"{dtype} input: scale float32, codes int8")
    overflow = "in fp16, x * 127 overflows past 65504 once |x| > 516: compute in float32 (x.float())"
    big = (randn(gen, 2, 2, 5, 16) * 2e4).clamp(-65504, 65504).to(torch.float16)
    _check_case(fn, big, "float16 values up to 6e4", overflow)
    tiny = (randn(gen, 2, 2, 5, 16) * 1e-5).to(torch.float16)
    _check_case(fn, tiny, "float16 values near 1e-5", "in fp16, max|x| / 127 underflows: compute in float32")
    _check_case(fn, randn(gen, 2, 2, 5, 16, dtype=torch.bfloat16) * 1e30, "bfloat16 values near 1e30")
    transposed = _varied(gen, 2, 7, 3, 16).transpose(1, 2)  # [B, T, KV, D] -> [B, KV, T, D], as in a model
    _check_case(fn, transposed, "a transposed cache tensor")


def _hidden_no_aliasing(fn: Callable[..., Any], gen: torch.Generator) -> None:
    first = _check_case(fn, _varied(gen, 2, 3, 6, 16), "first of two calls with the same shape")
    copy = snapshot(first)
    _check_case(fn, _varied(gen, 2, 3, 6, 16), "second of two calls with the same shape")
    assert_unchanged(
        first,
        copy,
        "the codes or scale returned by quantize_int8",
        "they share memory with a buffer your function reuses; return new tensors from every call",
    )


@graded("quantize_int8", *REFERENCES)
def quantize_int8_hidden(fn: Callable[..., Any]) -> None:
    """Leading axes, T == D, edge tokens, fp16/bf16 (overflow, underflow), non-contiguous, no aliasing."""
    gen = generator(404)
    _hidden_shapes(fn, gen)
    _hidden_dtypes(fn, gen)
    _hidden_no_aliasing(fn, gen)
    print("quantize_int8: hidden tests passed")
