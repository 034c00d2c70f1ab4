"""Checks for chapter 03 (MQA and GQA): repeat_kv, grouped attention with a KV-heads-only cache,
MHA -> GQA conversion by mean-pooling, KV bytes per token of real models, and the MLA bonus.

Every check builds its own inputs and compares the learner's function with kvlib's reference.
When the output is wrong it recomputes the classic wrong variants (tiled heads instead of
grouped, missing or misplaced causal mask, sum instead of mean, ...) and names the one matched.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from autograder.checks.common import CheckFailed, assert_close, assert_shape, call, diagnose, expect

# --------------------------------------------------------------------------------------------
# Exercise 1: repeat_kv
# --------------------------------------------------------------------------------------------

_REPEAT_HINT = "query head h must read key/value head h // n_rep"


def _repeat_variants(x: Tensor, n_rep: int) -> dict[str, Tensor]:
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


def _check_repeat_case(fn: Callable[..., Any], x: Tensor, n_rep: int, what: str) -> None:
    from kvlib.attention import repeat_kv as reference

    b, kv, t, d = x.shape
    try:
        out = call(fn, x.clone(), n_rep, what="repeat_kv")
    except CheckFailed as exc:
        if "view" in str(exc):
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
    if tuple(out.shape) != shape:
        wrong_axis = {
            (b * n_rep, kv, t, d): "the batch axis (dim 0)",
            (b, kv, t * n_rep, d): "the sequence axis (dim 2)",
            (b, kv, t, d * n_rep): "the head_dim axis (dim -1)",
        }.get(tuple(out.shape))
        hint = (
            f"you repeated along {wrong_axis}; repeat along the head axis, dim=1"
            if wrong_axis
            else "repeat along the head axis (dim 1) only, n_rep copies of each key/value head"
        )
        assert_shape(out, shape, f"repeat_kv(x, n_rep={n_rep}) for {what}", hint)
    expected = reference(x, n_rep)
    if n_rep > 1 and kv > 1:
        mistake = diagnose(out, _repeat_variants(x, n_rep))
        if mistake:
            raise CheckFailed(f"repeat_kv is wrong for {what}: {mistake}")
    expect(out.dtype == x.dtype, f"repeat_kv must keep the dtype ({x.dtype}), got {out.dtype}")
    assert_close(out, expected, f"repeat_kv(x, n_rep={n_rep}) for {what}", _REPEAT_HINT, atol=0, rtol=0)


def repeat_kv_visible(fn: Callable[..., Any]) -> None:
    """Shape and head order on a tiny input: two KV heads repeated twice."""
    x = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(1, 2, 3, 2)  # kv head 0: 0..5, kv head 1: 6..11
    _check_repeat_case(fn, x, 2, "x of shape [1, 2, 3, 2] (2 KV heads, n_rep=2)")
    print("repeat_kv: visible tests passed")


def repeat_kv_hidden(fn: Callable[..., Any]) -> None:
    """Seeded random inputs, several n_rep, n_rep = 1, bf16, and a non-contiguous input."""
    g = torch.Generator().manual_seed(303)
    for b, kv, t, d, n_rep in [(2, 3, 5, 4, 2), (1, 2, 7, 8, 4), (3, 4, 2, 2, 3), (2, 1, 4, 4, 8)]:
        x = torch.randn(b, kv, t, d, generator=g)
        _check_repeat_case(fn, x, n_rep, f"x of shape {(b, kv, t, d)} with n_rep={n_rep}")
    x = torch.randn(2, 4, 3, 8, generator=g)
    _check_repeat_case(fn, x, 1, "n_rep=1 (MHA: nothing to repeat, return the same values)")
    xb = torch.randn(1, 2, 3, 4, generator=g).to(torch.bfloat16)
    _check_repeat_case(fn, xb, 2, "a bfloat16 input")
    # Keys as a model produces them: [B, T, KV, D] transposed to [B, KV, T, D] (not contiguous).
    xt = torch.randn(2, 5, 3, 4, generator=g).transpose(1, 2)
    _check_repeat_case(fn, xt, 2, "a non-contiguous input (k.transpose(1, 2), as a model produces it)")
    print("repeat_kv: hidden tests passed")


# --------------------------------------------------------------------------------------------
# Exercise 2: grouped attention with a cache that stores only the KV heads
# --------------------------------------------------------------------------------------------


def _attention(
    q: Tensor, k: Tensor, v: Tensor, *, tile: bool = False, mask: str = "causal", scale: float | None = None
) -> Tensor:
    """Attention with `KV <= H` heads and deliberate mistakes, for diagnosis (float64)."""
    h, kv = q.shape[1], k.shape[1]
    g = h // kv
    if tile:
        k, v = k.repeat(1, g, 1, 1), v.repeat(1, g, 1, 1)
    else:
        k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
    q, k, v = q.double(), k.double(), v.double()
    tq, tk = q.shape[-2], k.shape[-2]
    s = q @ k.transpose(-1, -2) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    if mask != "none":
        start = tk - tq if mask == "causal" else 0
        qp = torch.arange(start, start + tq).unsqueeze(1)
        s = s.masked_fill(torch.arange(tk).unsqueeze(0) > qp, float("-inf"))
    return torch.softmax(s, dim=-1) @ v


def _step_case(fn: Callable[..., Any], h: int, kv: int, steps: list[int], seed: int, what: str) -> None:
    from kvlib.cache.gqa import gqa_attention_step

    g = torch.Generator().manual_seed(seed)
    b, d = 2, 8
    past = None
    ref_past = None
    pos = 0
    for t in steps:
        q = torch.randn(b, h, t, d, generator=g)
        k_new = torch.randn(b, kv, t, d, generator=g)
        v_new = torch.randn(b, kv, t, d, generator=g)
        label = f"{what}, step of {t} token(s) after {pos} cached"
        result = call(fn, q.clone(), k_new.clone(), v_new.clone(), past, what="grouped_attention_step")
        expect(
            isinstance(result, tuple)
            and len(result) == 2
            and isinstance(result[1], tuple)
            and len(result[1]) == 2,
            "grouped_attention_step must return (out, (k_all, v_all))",
        )
        out, (k_all, v_all) = result
        ref_out, (ref_k, ref_v) = gqa_attention_step(q, k_new, v_new, ref_past)
        expect(
            isinstance(k_all, torch.Tensor) and isinstance(v_all, torch.Tensor),
            "the returned cache must be a pair of tensors (k_all, v_all)",
        )
        if k_all.dim() == 4 and k_all.shape[1] == h and h != kv:
            raise CheckFailed(
                f"{label}: your cache holds {h} heads, the repeated keys; it must store only the "
                f"{kv} key/value heads (repeat after caching, inside attention), or GQA saves no memory"
            )
        if k_all.dim() == 4 and k_all.shape[-2] == t and pos > 0:
            raise CheckFailed(
                f"{label}: the returned cache has only the {t} new token(s); concatenate the past "
                "keys/values with the new ones on the sequence axis (dim=-2)"
            )
        assert_shape(
            k_all,
            tuple(ref_k.shape),
            f"cached keys ({label})",
            "concatenate past and new keys on the sequence axis, dim=-2: [B, KV, P + T, D]",
        )
        assert_shape(
            v_all,
            tuple(ref_v.shape),
            f"cached values ({label})",
            "concatenate past and new values on the sequence axis, dim=-2: [B, KV, P + T, D]",
        )
        if pos > 0 and torch.equal(k_all, torch.cat([k_new, past[0]], dim=-2)):
            raise CheckFailed(
                f"{label}: the new keys must go AFTER the cached ones: torch.cat([k_past, k_new], dim=-2)"
            )
        assert_close(
            k_all, ref_k, f"cached keys ({label})", "the cache must hold past then new keys, unchanged"
        )
        assert_close(
            v_all, ref_v, f"cached values ({label})", "the cache must hold past then new values, unchanged"
        )
        assert_shape(
            out,
            tuple(ref_out.shape),
            f"attention output ({label})",
            "one output per query head: [B, H, T, D]",
        )
        if not torch.allclose(out.double(), ref_out.double(), atol=1e-4, rtol=1e-4):
            variants = {
                "query heads read the wrong key/value head: head h must use kv head h // (H // KV) "
                "(repeat_interleave), not h % KV (repeat/tile)": _attention(q, ref_k, ref_v, tile=True),
                "no causal mask: a prefill query must not see later keys": _attention(
                    q, ref_k, ref_v, mask="none"
                ),
                "the causal mask ignores the cached tokens: new query i sits at position P + i and sees keys "
                "0..P+i (offset the mask by the number of cached tokens)": _attention(
                    q, ref_k, ref_v, mask="topleft"
                ),
                "the scores are not scaled by 1/sqrt(head_dim)": _attention(q, ref_k, ref_v, scale=1.0),
                "the scores are scaled by 1/head_dim instead of 1/sqrt(head_dim)": _attention(
                    q, ref_k, ref_v, scale=1.0 / d
                ),
                "the new queries attend only to the new keys; they must see the cached keys too": _attention(
                    q, k_new, v_new
                ),
            }
            mistake = diagnose(out, variants, atol=1e-4)
            raise CheckFailed(f"attention output is wrong ({label})" + (f": {mistake}" if mistake else ""))
        past = (k_all, v_all)
        ref_past = (ref_k, ref_v)
        pos += t


def grouped_attention_step_visible(fn: Callable[..., Any]) -> None:
    """MHA (KV == H) prefill then one decode step; output equals plain causal attention."""
    _step_case(fn, h=2, kv=2, steps=[3, 1], seed=1, what="MHA (H=2, KV=2)")
    print("grouped_attention_step: visible tests passed")


def grouped_attention_step_hidden(fn: Callable[..., Any]) -> None:
    """GQA with groups of 3 (prefill, decode, chunk), MQA, MHA, against kvlib's reference."""
    _step_case(fn, h=6, kv=2, steps=[4, 1, 3, 1], seed=2, what="GQA (H=6, KV=2)")
    _step_case(fn, h=4, kv=1, steps=[5, 1, 2], seed=3, what="MQA (H=4, KV=1)")
    _step_case(fn, h=4, kv=4, steps=[2, 3, 1], seed=4, what="MHA (H=4, KV=4)")
    _step_case(fn, h=8, kv=4, steps=[1, 1, 1], seed=5, what="GQA (H=8, KV=4), token by token")
    print("grouped_attention_step: hidden tests passed")
