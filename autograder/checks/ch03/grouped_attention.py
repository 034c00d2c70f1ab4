"""Exercise `grouped_attention_step`: one causal attention step with a cache of KV heads only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..common import CheckFailed, assert_close, assert_shape, diagnose, expect
from ..delegation import graded
from ..fixtures import attention_variant, generator, randn
from ..properties import assert_dtype, assert_unchanged, call_pure, large_scores, snapshot, with_fill_hint
from ._batch import with_batch_hint

REFERENCES = (
    "kvlib.cache.gqa.gqa_attention_step",
    "kvlib.cache.gqa.grouped_attention",
    "kvlib.cache.gqa.repeated_attention",
    "kvlib.attention.causal_attention",
)

# Output tolerance per dtype: fp16 keeps ~3 decimal digits, so a correct fp16 computation is ~1e-3 off.
_ATOL = {torch.float32: 1e-4, torch.float16: 8e-3, torch.bfloat16: 6e-2}


def _variants(q: Tensor, k_all: Tensor, v_all: Tensor, k_new: Tensor, v_new: Tensor) -> dict[str, Tensor]:
    d = q.shape[-1]
    return {
        "query heads read the wrong key/value head: head h must use kv head h // (H // KV) "
        "(repeat_interleave), not h % KV (repeat/tile)": attention_variant(q, k_all, v_all, heads="tiled"),
        "no causal mask: a prefill query must not see later keys": attention_variant(
            q, k_all, v_all, mask="none"
        ),
        "the causal mask ignores the cached tokens: new query i sits at position P + i and sees keys "
        "0..P+i (offset the mask by the number of cached tokens)": attention_variant(
            q, k_all, v_all, mask="no_offset"
        ),
        "the mask also hides the diagonal: a token attends to itself (mask keys j > P + i only)": (
            attention_variant(q, k_all, v_all, mask="strict")
        ),
        "the mask is the wrong way round: it hides the past and keeps the future": attention_variant(
            q, k_all, v_all, mask="wrong_axis"
        ),
        "the scores are not scaled by 1/sqrt(head_dim)": attention_variant(q, k_all, v_all, scale=1.0),
        "the scores are scaled by 1/head_dim instead of 1/sqrt(head_dim)": attention_variant(
            q, k_all, v_all, scale=1.0 / d
        ),
        "the softmax runs over the query axis; it must normalise over the keys (dim=-1)": attention_variant(
            q, k_all, v_all, softmax_dim=-2
        ),
        "masked scores were set to 0 (multiplied by the mask) instead of -inf, so masked keys still get "
        "weight": attention_variant(q, k_all, v_all, fill=0.0),
        "the new queries attend only to the new keys; they must see the cached keys too": attention_variant(
            q, k_new, v_new
        ),
    }


def _expected(q: Tensor, k_all: Tensor, v_all: Tensor) -> Tensor:
    """The right output in float64 (attention_variant with no mistake computes in float64)."""
    h, kv = q.shape[1], k_all.shape[1]
    k, v = k_all.double().repeat_interleave(h // kv, 1), v_all.double().repeat_interleave(h // kv, 1)
    return attention_variant(q.double(), k, v)


class _Sequence:
    """One sequence decoded step by step through the learner's function, checked at every step."""

    def __init__(
        self,
        fn: Callable[..., Any],
        h: int,
        kv: int,
        *,
        b: int = 2,
        d: int = 8,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        magnitude: float | None = None,
        what: str = "",
    ) -> None:
        self.fn, self.h, self.kv, self.b, self.d, self.dtype = fn, h, kv, b, d, dtype
        self.gen, self.magnitude = generator(seed), magnitude
        self.what = what or f"H={h}, KV={kv}, batch of {b}"
        self.past: tuple[Tensor, Tensor] | None = None
        self.k_ref = torch.zeros(b, kv, 0, d, dtype=dtype)
        self.v_ref = torch.zeros(b, kv, 0, d, dtype=dtype)
        self.returned: list[tuple[Any, Any]] = []  # (result, private copy) of every step

    def _draw(self, *shape: int) -> Tensor:
        if self.magnitude is not None:
            return large_scores(*shape, generator=self.gen, magnitude=self.magnitude).to(self.dtype)
        return randn(self.gen, *shape, dtype=self.dtype)

    def step(self, t: int) -> None:
        b, h, kv, d = self.b, self.h, self.kv, self.d
        q, k_new, v_new = (
            self._draw(b, h, t, d),
            self._draw(b, kv, t, d),
            randn(self.gen, b, kv, t, d, dtype=self.dtype),
        )
        pos = self.k_ref.shape[-2]
        label = f"{self.what}, step of {t} token(s) after {pos} cached"
        k_ref = torch.cat([self.k_ref, k_new], dim=-2)
        v_ref = torch.cat([self.v_ref, v_new], dim=-2)
        past = self.past
        try:
            result = self._check(q, k_new, v_new, past, k_ref, v_ref, label)
        except CheckFailed as exc:

            def row_ok() -> bool:
                row_past = None if past is None else (past[0][:1].clone(), past[1][:1].clone())
                out, (k1, v1) = self.fn(q[:1].clone(), k_new[:1].clone(), v_new[:1].clone(), row_past)
                want = _expected(q[:1], k_ref[:1], v_ref[:1])
                return (
                    tuple(out.shape) == tuple(want.shape)
                    and torch.allclose(out.double(), want, atol=_ATOL[self.dtype], rtol=1e-3)
                    and torch.equal(k1, k_ref[:1])
                    and torch.equal(v1, v_ref[:1])
                )

            raise with_batch_hint(exc, b, row_ok) from None
        self.returned.append((result, snapshot(result)))
        self.past = (result[1][0], result[1][1])
        self.k_ref, self.v_ref = k_ref, v_ref

    def _check(self, q: Tensor, k_new: Tensor, v_new: Tensor, past: Any, ref_k: Tensor, ref_v: Tensor,
               label: str) -> Any:  # fmt: skip
        h, kv, t = self.h, self.kv, q.shape[-2]
        pos = ref_k.shape[-2] - t
        result = call_pure(self.fn, q, k_new, v_new, past, what="grouped_attention_step")
        expect(
            isinstance(result, (tuple, list))
            and len(result) == 2
            and isinstance(result[1], (tuple, list))
            and len(result[1]) == 2,
            "grouped_attention_step must return (out, (k_all, v_all))",
        )
        out, (k_all, v_all) = result
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
        for name, got, want in (("keys", k_all, ref_k), ("values", v_all, ref_v)):
            assert_shape(
                got,
                tuple(want.shape),
                f"cached {name} ({label})",
                f"concatenate past and new {name} on the sequence axis, dim=-2: [B, KV, P + T, D]",
            )
        if pos > 0 and torch.equal(k_all, torch.cat([k_new, past[0]], dim=-2)):
            raise CheckFailed(
                f"{label}: the new keys must go AFTER the cached ones: torch.cat([k_past, k_new], dim=-2)"
            )
        for name, got, want in (("keys", k_all, ref_k), ("values", v_all, ref_v)):
            assert_dtype(got, want.dtype, f"the cached {name} ({label})", "store them as they come, no cast")
            assert_close(
                got, want, f"cached {name} ({label})", f"the cache must hold past then new {name}, unchanged"
            )
        assert_shape(
            out, tuple(q.shape), f"attention output ({label})", "one output per query head: [B, H, T, D]"
        )
        assert_dtype(
            out,
            q.dtype,
            f"the attention output ({label})",
            "compute in q's dtype, or cast the result back with .to(q.dtype)",
        )
        want = _expected(q, ref_k, ref_v)
        atol = _ATOL[q.dtype] * (10 if self.magnitude else 1)
        if not torch.isfinite(out).all():
            if self.magnitude:
                raise CheckFailed(
                    f"attention output has NaN/inf ({label}) for large scores: exp() overflows; "
                    "subtract each "
                    "row's max before exp (torch.softmax does it for you)"
                )
            raise CheckFailed(f"attention output has NaN/inf ({label}): is a row fully masked, or 0 * inf?")
        if not torch.allclose(out.double(), want, atol=atol, rtol=1e-3) and (self.magnitude or 0) > 100:
            raise CheckFailed(  # every ordinary case passed before this one: the mask is the cause
                f"attention output is wrong ({label}): with scores in the hundreds of thousands, masked keys "
                "leak into the result: a finite mask (an additive bias such as -65504 or -1e4) is not "
                "enough; fill masked scores with float('-inf') or torch.finfo(scores.dtype).min"
            )
        if not torch.allclose(out.double(), want, atol=atol, rtol=1e-3):
            mistake = diagnose(out, _variants(q, ref_k, ref_v, k_new, v_new), atol=atol)
            err = (out.double() - want).abs().max().item()
            raise CheckFailed(
                f"attention output is wrong ({label}; max abs error {err:.3g})"
                + (f": {mistake}" if mistake else "")
            )
        return result

    def verify_earlier_results(self, cause: str) -> None:
        for i, (result, copy) in enumerate(self.returned):
            assert_unchanged(
                result,
                copy,
                f"the (out, (k_all, v_all)) returned at step {i + 1} of {self.what}",
                cause,
            )


_ALIAS_CAUSE = (
    "it shares memory with a buffer that a later call writes into (a preallocated or module-level "
    "tensor); the caller keeps every returned cache, so return new tensors (torch.cat makes them)"
)


def _run(fn: Callable[..., Any], h: int, kv: int, steps: list[int], **kwargs: Any) -> _Sequence:
    seq = _Sequence(fn, h, kv, **kwargs)
    for t in steps:
        seq.step(t)
        seq.verify_earlier_results(_ALIAS_CAUSE)
    return seq


@graded("grouped_attention_step", *REFERENCES)
def grouped_attention_step_visible(fn: Callable[..., Any]) -> None:
    """GQA with groups of 2 on a batch of 2: prefill of 3 tokens, then one decode step (offset 3)."""
    _run(fn, h=4, kv=2, steps=[3, 1], seed=1, what="GQA (H=4, KV=2), batch of 2")
    print("grouped_attention_step: visible tests passed")


@graded("grouped_attention_step", *REFERENCES)
def grouped_attention_step_hidden(fn: Callable[..., Any]) -> None:
    """Groups of 1-8, batches of 1-3, chunks after a cache, fp16, large scores, inputs and results kept."""
    _run(fn, h=6, kv=2, steps=[4, 1, 3, 1], seed=2, what="GQA (H=6, KV=2), batch of 2")
    _run(fn, h=4, kv=1, steps=[5, 1, 2], seed=3, b=3, what="MQA (H=4, KV=1), batch of 3")
    _run(fn, h=4, kv=4, steps=[2, 3, 1], seed=4, what="MHA (H=4, KV=4), batch of 2")
    _run(fn, h=8, kv=4, steps=[1, 1, 1], seed=5, b=1, what="GQA (H=8, KV=4), one sequence, token by token")
    _run(fn, h=8, kv=2, steps=[33, 1, 17], seed=6, d=4, what="GQA (H=8, KV=2), batch of 2, 33-token prefill")
    _run(fn, h=6, kv=3, steps=[5, 2], seed=7, b=3, what="GQA (H=6, KV=3), batch of 3")
    try:
        _run(fn, h=6, kv=2, steps=[5, 1, 2], seed=8, dtype=torch.float16, what="GQA (H=6, KV=2), fp16 inputs")
    except CheckFailed as exc:
        raise with_fill_hint(exc) from None
    _run(
        fn,
        h=4,
        kv=2,
        steps=[6, 1],
        seed=9,
        magnitude=60.0,
        what="GQA (H=4, KV=2), large scores (|q.k| ~ 1e4)",
    )
    _run(
        fn,
        h=4,
        kv=2,
        steps=[6, 1],
        seed=12,
        magnitude=600.0,
        what="GQA (H=4, KV=2), huge scores (|q.k| ~ 1e6)",
    )
    # Two sequences decoded in turn: each call depends on its own arguments only, and what it returned
    # earlier stays as it was (no cache kept in a global buffer or keyed by shape).
    a = _Sequence(fn, 6, 2, b=2, seed=10, what="sequence A (H=6, KV=2, batch of 2)")
    c = _Sequence(fn, 6, 2, b=2, seed=11, what="sequence B (H=6, KV=2, batch of 2)")
    for seq, t in ((a, 4), (c, 3), (a, 1), (c, 2), (a, 1), (c, 1)):
        seq.step(t)
        for s in (a, c):
            s.verify_earlier_results("two sequences decoded in turn overwrote each other; " + _ALIAS_CAUSE)
    print("grouped_attention_step: hidden tests passed")
