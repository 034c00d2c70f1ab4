"""Exercise `repeat_kv`: copy each key/value head to the query heads of its group."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..common import CheckFailed, assert_close, assert_shape, diagnose, expect
from ..delegation import graded
from ..fixtures import generator, randn
from ..properties import assert_dtype, call_pure
from ._batch import with_batch_hint

REFERENCES = ("kvlib.attention.repeat_kv",)

_REPEAT_HINT = "query head h must read key/value head h // n_rep"


def _variants(x: Tensor, n_rep: int) -> dict[str, Tensor]:
    b, kv, t, d = x.shape
    return {
        "heads are paired with the wrong group: x.repeat / expand on a new leading axis tiles the heads "
        "(kv0, kv1, kv0, kv1, ...); query head h must use kv head h // n_rep, i.e. repeat_interleave "
        "(kv0, kv0, kv1, kv1, ...)": x.repeat(1, n_rep, 1, 1),
        "the copies are made along the wrong axis: the expand axis must sit right after the head axis "
        "(x[:, :, None] -> [B, KV, n_rep, T, D]) before reshaping to [B, KV*n_rep, T, D]; you expanded "
        "after the sequence axis, which interleaves positions across heads": x[:, :, :, None]
        .expand(b, kv, t, n_rep, d)
        .reshape(b, kv * n_rep, t, d),
    }


def _reference(x: Tensor, n_rep: int) -> Tensor:
    return x.repeat_interleave(n_rep, dim=1)  # (B, KV * n_rep, T, D), exact copies


def _check_case(fn: Callable[..., Any], x: Tensor, n_rep: int, what: str) -> Tensor:
    b, kv, t, d = x.shape
    try:
        out = call_pure(fn, x, n_rep, what="repeat_kv")
    except CheckFailed as exc:
        if "view" in str(exc) and "in place" not in str(exc):
            raise CheckFailed(
                f"{exc} (for {what}); `.view` cannot merge an expanded axis or work on a non-contiguous "
                "tensor: use `.reshape`"
            ) from None
        raise
    expect(
        isinstance(out, torch.Tensor),
        f"repeat_kv must return a torch.Tensor for {what}, got {type(out).__name__}",
    )
    if out.dim() == 5:
        raise CheckFailed(
            f"repeat_kv returned a 5-D tensor {tuple(out.shape)} for {what}: after expand you must reshape "
            "[B, KV, n_rep, T, D] to [B, KV * n_rep, T, D]"
        )
    shape = (b, kv * n_rep, t, d)
    got = tuple(out.shape)
    if got != shape:
        if b > 1 and got == (1, *shape[1:]):
            raise CheckFailed(
                f"repeat_kv returned batch size 1 for a batch of {b} ({what}): you kept only the first "
                "sequence; keep the batch axis (dim 0) as it is"
            )
        if n_rep != 2 and got == (b, 2 * kv, t, d):
            raise CheckFailed(
                f"repeat_kv made 2 copies of each head for n_rep={n_rep} ({what}): use n_rep, not a "
                "group size of 2 fixed in the code"
            )
        wrong_axis = {
            (b * n_rep, kv, t, d): "the batch axis (dim 0)",
            (b, kv, t * n_rep, d): "the sequence axis (dim 2)",
            (b, kv, t, d * n_rep): "the head_dim axis (dim -1)",
        }.get(got)
        hint = (
            f"you repeated along {wrong_axis}; repeat along the head axis, dim=1"
            if wrong_axis
            else "repeat along the head axis (dim 1) only, n_rep copies of each key/value head"
        )
        assert_shape(out, shape, f"repeat_kv(x, n_rep={n_rep}) for {what}", hint)
    if n_rep > 1 and kv > 1:
        mistake = diagnose(out, _variants(x, n_rep), atol=0)
        if mistake:
            raise CheckFailed(f"repeat_kv is wrong for {what}: {mistake}")
    assert_dtype(out, x.dtype, f"repeat_kv's result for {what}")
    expected = _reference(x, n_rep)
    try:
        assert_close(out, expected, f"repeat_kv(x, n_rep={n_rep}) for {what}", _REPEAT_HINT, atol=0, rtol=0)
    except CheckFailed as exc:

        def row_ok() -> bool:
            one = fn(x[:1].clone(), n_rep)
            return isinstance(one, torch.Tensor) and torch.equal(one, expected[:1])

        raise with_batch_hint(exc, b, row_ok) from None
    return out


@graded("repeat_kv", *REFERENCES)
def repeat_kv_visible(fn: Callable[..., Any]) -> None:
    """Head order on a tiny readable input, then a batch of 2 with groups of 3."""
    x = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(1, 2, 3, 2)  # kv head 0: 0..5, kv head 1: 6..11
    _check_case(fn, x, 2, "x of shape [1, 2, 3, 2] (2 KV heads, n_rep=2)")
    x = randn(generator(30), 2, 2, 4, 3)
    _check_case(fn, x, 3, "x of shape [2, 2, 4, 3] (a batch of 2, 2 KV heads, n_rep=3)")
    print("repeat_kv: visible tests passed")


@graded("repeat_kv", *REFERENCES)
def repeat_kv_hidden(fn: Callable[..., Any]) -> None:
    """Seeded random inputs and group sizes, n_rep = 1, bf16/fp16 kept, non-contiguous input, no mutation."""
    g = generator(303)
    for b, kv, t, d, n_rep in [
        (2, 3, 5, 4, 2),
        (1, 2, 7, 8, 4),
        (3, 4, 2, 2, 3),
        (2, 1, 4, 4, 8),
        (3, 2, 33, 4, 4),
    ]:
        x = randn(g, b, kv, t, d)
        _check_case(fn, x, n_rep, f"x of shape {(b, kv, t, d)} with n_rep={n_rep}")
    x = randn(g, 2, 4, 3, 8)
    _check_case(fn, x, 1, "n_rep=1 (MHA: nothing to repeat, return the same values)")
    for dtype in (torch.bfloat16, torch.float16):
        _check_case(fn, randn(g, 2, 2, 3, 4, dtype=dtype), 2, f"a {dtype} input of shape (2, 2, 3, 4)")
        _check_case(fn, randn(g, 2, 3, 2, 4, dtype=dtype), 1, f"a {dtype} input with n_rep=1")
    # Keys as a model produces them: [B, T, KV, D] transposed to [B, KV, T, D] (not contiguous).
    xt = randn(g, 2, 5, 3, 4).transpose(1, 2)
    _check_case(fn, xt, 2, "a non-contiguous input (k.transpose(1, 2), as a model produces it)")
    _check_case(fn, randn(g, 2, 5, 3, 4).transpose(1, 2), 1, "a non-contiguous input with n_rep=1")
    print("repeat_kv: hidden tests passed")
