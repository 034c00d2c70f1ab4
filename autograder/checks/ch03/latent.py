"""Bonus exercise `expand_latent`: per-head keys and values from cached MLA latents."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..common import CheckFailed, assert_shape, call, diagnose, expect, matches
from ..delegation import graded
from ..fixtures import generator, randn
from ..properties import assert_dtype, call_pure
from ._batch import with_batch_hint

REFERENCES = ("kvlib.cache.mla.expand_latent",)

_ATOL = {torch.float32: 1e-4, torch.bfloat16: 8e-2, torch.float16: 1e-2}


def _split(flat: Tensor, h: int) -> Tensor:
    b, t, hd = flat.shape
    return flat.view(b, t, h, hd // h).transpose(1, 2)  # (B, H, T, D)


def _expected(c: Tensor, w: Tensor, h: int) -> Tensor:
    return _split(c.double() @ w.double().T, h)


def _latent_case(fn: Callable[..., Any], b: int, t: int, d_c: int, h: int, d: int, seed: int,
                 dtype: torch.dtype = torch.float32) -> None:  # fmt: skip
    g = generator(seed)
    c = randn(g, b, t, d_c, dtype=dtype)
    w_uk, w_uv = randn(g, h * d, d_c, dtype=dtype), randn(g, h * d, d_c, dtype=dtype)
    label = f"c_kv {(b, t, d_c)}, {h} heads of {d}" + ("" if dtype == torch.float32 else f", {dtype}")
    try:
        result = call_pure(fn, c, w_uk, w_uv, h, what="expand_latent")
    except CheckFailed as exc:
        text = str(exc)
        if "cannot be multiplied" in text or "size mismatch" in text:
            raise CheckFailed(
                f"{exc} ({label}); w_uk and w_uv are nn.Linear weights [H*D, d_c]: multiply by their "
                "transpose, c_kv @ w_uk.T"
            ) from None
        if "is invalid for input of size" in text or "view size" in text:
            raise CheckFailed(
                f"{exc} ({label}); the head width is D = w_uk.shape[0] // num_heads (rows of the "
                "up-projection), not d_c // num_heads: the latent is narrower than H * D"
            ) from None
        raise
    expect(isinstance(result, (tuple, list)) and len(result) == 2, "expand_latent must return (k, v)")
    k, v = result
    k_ref, v_ref = _expected(c, w_uk, h), _expected(c, w_uv, h)
    atol = _ATOL[dtype]
    try:
        for mine, ref, w, other, name in ((k, k_ref, w_uk, w_uv, "keys"), (v, v_ref, w_uv, w_uk, "values")):
            hint = "[B, H, T, D]" + (
                f"; you kept only the first sequence of the batch of {b}"
                if b > 1 and getattr(mine, "shape", (0,))[0] == 1
                else ""
            )
            assert_shape(mine, tuple(ref.shape), f"{name} ({label})", hint)
            assert_dtype(
                mine, dtype, f"the {name} ({label})", "compute in c_kv's dtype (no .float()/.double())"
            )
            if torch.allclose(mine.double(), ref, atol=atol, rtol=1e-3):
                continue
            flat = c.double() @ w.double().T  # (B, T, H*D)
            variants = {
                "the heads are scrambled: (c_kv @ w.T) is [B, T, H*D]; view it as [B, T, H, D] and "
                "transpose to "
                "[B, H, T, D] (a direct reshape to [B, H, T, D] mixes tokens and heads)": flat.reshape(
                    b, h, t, d
                ),
                "the head axis is split in the wrong order: rows h*D .. h*D+D-1 belong to head h, view as "
                "[B, T, H, D], not [B, T, D, H]": flat.view(b, t, d, h).permute(0, 3, 1, 2),
                f"the {name} use the other up-projection (keys come from w_uk, values from w_uv)": _expected(
                    c, other, h
                ),
            }
            mistake = diagnose(mine, variants, atol=atol)
            raise CheckFailed(f"{name} are wrong ({label})" + (f": {mistake}" if mistake else ""))
    except CheckFailed as exc:

        def row_ok() -> bool:
            k1, v1 = fn(c[:1].clone(), w_uk.clone(), w_uv.clone(), h)
            return all(
                tuple(x.shape) == tuple(r[:1].shape)
                and torch.allclose(x.double(), r[:1], atol=atol, rtol=1e-3)
                for x, r in ((k1, k_ref), (v1, v_ref))
            )

        raise with_batch_hint(exc, b, row_ok) from None


@graded("expand_latent", *REFERENCES)
def expand_latent_visible(fn: Callable[..., Any]) -> None:
    """A batch of 2: shapes and values of k and v (the latent is narrower than H * D).

    The bonus is optional: left as released, the visible test only says so, so Run All goes on to the
    rest of the notebook; the hidden tests (self-check, nbgrader) still score it 0, "not implemented".
    """
    try:
        _latent_case(fn, b=2, t=3, d_c=4, h=2, d=3, seed=0)
    except CheckFailed as exc:
        if "not implemented yet" not in str(exc):
            raise
        print("expand_latent: the optional bonus is not attempted; it scores 0 of its 2 points")
        return
    print("expand_latent: visible tests passed")


@graded("expand_latent", *REFERENCES)
def expand_latent_hidden(fn: Callable[..., Any]) -> None:
    """Random latents and weights of several shapes and batches, bf16 kept, inputs not modified."""
    _latent_case(fn, b=2, t=5, d_c=6, h=4, d=3, seed=1)
    _latent_case(fn, b=1, t=1, d_c=8, h=2, d=5, seed=2)
    _latent_case(fn, b=3, t=4, d_c=5, h=3, d=7, seed=3)
    _latent_case(fn, b=2, t=33, d_c=16, h=4, d=8, seed=4)
    _latent_case(fn, b=2, t=4, d_c=8, h=2, d=4, seed=5, dtype=torch.bfloat16)
    _fresh_each_call(fn)
    print("expand_latent: hidden tests passed")


def _fresh_each_call(fn: Callable[..., Any]) -> None:
    """The same tensors, changed in place between two calls (a cache grows that way): no memo by id."""
    gen = generator(6)
    c_kv, w_uk, w_uv = (randn(gen, *shape) for shape in ((2, 3, 4), (6, 4), (6, 4)))
    call(fn, c_kv, w_uk, w_uv, 2, what="expand_latent")
    c_kv.mul_(-2.0)  # the caller's own tensor, updated in place (e.g. a latent cache written into)
    k, _ = call(fn, c_kv, w_uk, w_uv, 2, what="expand_latent")
    expect(
        matches(k, _expected(c_kv, w_uk, 2), atol=1e-5),
        "expand_latent returned the keys of an earlier call after the latents changed in place: compute "
        "from the tensors you are given on every call (no results remembered by id(c_kv) or by shape)",
    )
