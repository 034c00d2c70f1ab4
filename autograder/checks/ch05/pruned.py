"""Exercise `pruned_fraction`: the KV bytes of a head-split cache over a dense cache's, by formula.

Checked by value on many seeded random plans (bool [num_layers, num_kv_heads] of various shapes, every
layer with its own count of full heads, non-contiguous plans) and on the edge cases the docstring names:
no full head, every head full, seq_len below num_sinks + window (a streaming head holds only what it has
seen), num_sinks 0, window 1, one token, streams far past the context. For a few plans the answer must
also equal what a real `HeadSplitKVCache` holds: its `nbytes()` over a dense cache's after the same
tokens (batch 2, 4 query heads on 2 KV heads, fp16 and bf16), checked after every chunk.

The answer must be a Python float (the docstring says so: an int, even 1 for an all-full plan, a 0-dim
tensor or a NumPy float32 fail with the fix; a NumPy float64 is a Python float), and full_heads must not
change. A wrong value is matched against the classic mistakes, which the message names: the saving
(1 - fraction), a percentage, streaming heads counted at num_sinks + window before they have seen that
many tokens, the sinks forgotten or added past what was seen, the limit F / N, integer division, one
layer's heads or one layer's plan taken for all layers, True read as "streaming".
"""

from __future__ import annotations

import math
import numbers
import random
from collections.abc import Callable
from typing import Any

import torch

from ..common import CheckFailed, expect
from ..delegation import graded
from ..fixtures import generator, randn
from ..properties import call_pure

# kvlib's function has the exercise's signature; a HeadSplitKVCache's nbytes() would measure the answer.
REFERENCES = ("kvlib.cache.heads.pruned_kv_fraction", "kvlib.cache.heads.HeadSplitKVCache")

REL_TOL = 1e-6  # float32 arithmetic inside, then float(...), is fine


def _reference(plan: torch.Tensor, seq_len: int, num_sinks: int, window: int) -> float:
    """From the docstring: full heads hold seq_len tokens, the others min(seq_len, num_sinks + window)."""
    heads, full = plan.numel(), int(plan.sum())
    return (full * seq_len + (heads - full) * min(seq_len, num_sinks + window)) / (heads * seq_len)


def _variants(plan: torch.Tensor, seq_len: int, num_sinks: int, window: int) -> dict[str, float]:
    """Classic wrong answers, each with the message that names it."""
    L, KV = plan.shape
    N, F = plan.numel(), int(plan.sum())
    F0 = int(plan[0].sum())
    kept = min(seq_len, num_sinks + window)
    want = _reference(plan, seq_len, num_sinks, window)

    def share(full: int, heads: int, streaming_tokens: int) -> float:
        return (full * seq_len + (heads - full) * streaming_tokens) / (heads * seq_len)

    return {
        "the memory saved (1 - fraction), not the fraction kept: return the tokens held over a dense "
        "cache's": 1 - want,
        "a percentage: return a fraction in (0, 1]": 100 * want,
        "streaming heads counted at num_sinks + window tokens even before they have seen that many: a head "
        "never holds more than it has seen, so it keeps min(seq_len, num_sinks + window)": share(
            F, N, num_sinks + window
        ),
        "the sinks are forgotten: a streaming head keeps num_sinks sinks AND a window, min(seq_len, "
        "num_sinks + window) tokens": share(F, N, min(seq_len, window)),
        "the sinks are added to min(seq_len, window): a head never holds more than it has seen, so it keeps "
        "min(seq_len, num_sinks + window)": share(F, N, num_sinks + min(seq_len, window)),
        "streaming heads counted at num_sinks + window + 1 tokens: a streaming head keeps its num_sinks "
        "sinks and its window of `window` tokens, min(seq_len, num_sinks + window) in all": share(
            F, N, min(seq_len, num_sinks + window + 1)
        ),
        "the limit F / N (the share of full heads), which the fraction only tends to as seq_len grows: the "
        "streaming heads hold tokens too": F / N,
        "integer division (//): the fraction is (tokens held) / (dense tokens), with /": float(
            (F * seq_len + (N - F) * kept) // (N * seq_len)
        ),
        "one layer's heads taken as all the heads: a dense cache holds seq_len tokens in each of the "
        "num_layers * num_kv_heads heads (full_heads.numel())": share(F, KV, kept),
        "the count of full heads of layer 0 used for every layer: each layer has its own, count them all "
        "(full_heads.sum() over both dims)": share(F0 * L, N, kept),
        "num_layers taken as the number of heads: there are num_layers * num_kv_heads heads "
        "(full_heads.numel())": share(F, L, kept),
        "True read as a streaming head: True = the head keeps every token": share(N - F, N, kept),
    }


def _check_type(got: Any, what: str) -> float:
    if isinstance(got, torch.Tensor):
        raise CheckFailed(
            f"{what} must return a Python float, got a tensor ({got!r:.50}): a sum of full_heads is a "
            "tensor, so convert it with int(full_heads.sum()) or .item() before computing, or return "
            "float(...)"
        )
    if isinstance(got, bool):
        raise CheckFailed(f"{what} must return a Python float, got the bool {got!r}")
    if isinstance(got, numbers.Integral):
        raise CheckFailed(
            f"{what} must return a Python float, got the int {got!r}: the fraction is a float on every "
            "input (1.0, not 1): compute it with / (not //), and return float(...) from any early exit"
        )
    expect(
        isinstance(got, float),
        f"{what} must return a Python float, got {type(got).__module__}.{type(got).__name__} {got!r:.40}: "
        "return float(...)",
    )
    expect(math.isfinite(got), f"{what} must return a finite fraction in (0, 1], got {got}")
    return float(got)


def _check(
    fn: Callable[..., Any],
    plan: torch.Tensor,
    seq_len: int,
    num_sinks: int,
    window: int,
    want: float | None = None,
    source: str = "",
) -> None:
    L, KV = plan.shape
    what = (
        f"pruned_fraction(a plan [{L}, {KV}] with {int(plan.sum())} full head(s), seq_len={seq_len}, "
        f"num_sinks={num_sinks}, window={window})"
    )
    got = _check_type(call_pure(fn, plan, seq_len, num_sinks, window, what="pruned_fraction"), what)
    if want is None:
        want = _reference(plan, seq_len, num_sinks, window)
    if math.isclose(got, want, rel_tol=REL_TOL, abs_tol=1e-12):
        return
    named = [
        message
        for message, value in _variants(plan, seq_len, num_sinks, window).items()
        if math.isclose(got, value, rel_tol=REL_TOL, abs_tol=1e-12)
        and not math.isclose(value, want, rel_tol=REL_TOL)
    ]
    if named:
        mistakes = "; or ".join(named)  # two mistakes can give the same number: name both
        raise CheckFailed(f"{what}{source}: you returned {got:.6g}, expected {want:.6g}: {mistakes}")
    if any(math.isclose(got, round(want, digits)) for digits in (1, 2, 3, 4)):
        raise CheckFailed(
            f"{what}{source}: you returned {got!r}, expected {want:.10g}: do not round the answer"
        )
    if not 0 < got <= 1:
        raise CheckFailed(
            f"{what}{source}: you returned {got:.6g}, expected {want:.6g}: the fraction kept is in (0, 1]"
        )
    raise CheckFailed(
        f"{what}{source}: you returned {got:.6g}, expected {want:.6g} (full heads hold seq_len tokens, the "
        "others min(seq_len, num_sinks + window), over seq_len tokens in every head)"
    )


def _forward_batch(T: int, D: int) -> Any:
    from kvlib.cache.base import ForwardBatch

    return ForwardBatch(
        torch.zeros(1, T, dtype=torch.long), None, torch.ones(1, 1, T, D), torch.zeros(1, 1, T, D), 1e4
    )


def _against_cache(
    fn: Callable[..., Any],
    plan: torch.Tensor,
    num_sinks: int,
    window: int,
    chunks: list[int],
    dtype: torch.dtype = torch.float32,
    B: int = 2,
    H: int = 4,
    D: int = 8,
) -> None:
    """Feed the same tokens to kvlib's HeadSplitKVCache and a dense cache; after every chunk the answer
    must equal their nbytes() ratio."""
    from kvlib.cache.dense import NaiveKVCache
    from kvlib.cache.heads import HeadSplitKVCache

    L, KV = plan.shape
    split, dense = HeadSplitKVCache(L, plan, num_sinks, window), NaiveKVCache(L)
    gen = generator(5)
    seq_len = 0
    for T in chunks:
        for layer in range(L):
            q, k, v = (randn(gen, B, n, T, D, dtype=dtype) for n in (H, KV, KV))
            split.attend(layer, q, k, v, _forward_batch(T, D))
            dense.update(layer, k, v)
        seq_len += T
        _check(
            fn,
            plan,
            seq_len,
            num_sinks,
            window,
            want=split.nbytes() / dense.nbytes(),
            source=f" (a HeadSplitKVCache holding {seq_len} tokens measures nbytes() / a dense cache's)",
        )


def _plan(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.bool)


@graded("pruned_fraction", *REFERENCES)
def pruned_fraction_visible(fn: Callable[..., Any]) -> None:
    plan = _plan([[1, 0], [0, 0], [1, 1]])  # 3 layers, 2 KV heads: 3 of 6 heads full, 2, 0 and 1 per layer
    _check(fn, plan, 20, 2, 5)
    _check(fn, plan, 512, 4, 64)
    _check(fn, plan, 5, 2, 5)  # fewer tokens than sinks + window: every head holds all 5
    _against_cache(fn, plan, 2, 5, [6, 1, 1, 4, 1, 10])  # batch 2, 4 query heads on 2 KV heads
    print("visible tests passed")


EDGE_CASES = [
    (_plan([[0, 0], [0, 0]]), 100, 4, 16),  # no full head
    (_plan([[1, 1, 1], [1, 1, 1]]), 100, 4, 16),  # every head full: 1.0
    (_plan([[1, 0, 0, 0]]), 10, 4, 16),  # seq_len below num_sinks + window: nothing evicted yet, 1.0
    (_plan([[1, 0, 0, 0]]), 20, 4, 16),  # seq_len exactly num_sinks + window
    (_plan([[1, 0, 0, 0]]), 21, 4, 16),  # one past it
    (_plan([[0, 1], [0, 0], [0, 0]]), 300, 0, 32),  # no sinks
    (_plan([[0, 1], [1, 0]]), 50, 3, 1),  # window of one token
    (_plan([[0, 0, 1]]), 1, 0, 1),  # one token
    (_plan([[0, 0, 0, 1], [0, 0, 0, 0]]), 3, 8, 8),  # fewer tokens than sinks
    (_plan([[1, 1, 1, 0], [0, 0, 0, 0], [1, 0, 0, 0]]), 4096, 4, 252),  # a different count per layer
    (_plan([[1, 1], [0, 0], [0, 1], [1, 1], [0, 0], [0, 0]]), 131_072, 4, 16),  # long, ~ F / N
    (_plan([[1] * 8 + [0] * 8]), 1_000_000, 64, 4096),  # past any context
]


@graded("pruned_fraction", *REFERENCES)
def pruned_fraction_hidden(fn: Callable[..., Any]) -> None:
    for plan, seq_len, sinks, window in EDGE_CASES:
        _check(fn, plan, seq_len, sinks, window)
    plan_t = _plan([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 1, 0]]).t()  # a non-contiguous [3, 4] plan
    _check(fn, plan_t, 200, 4, 16)
    rng = random.Random(5)
    for i in range(150):
        L, KV = rng.randint(1, 12), rng.choice([1, 2, 3, 4, 8])
        density = rng.choice([0.0, 0.2, 0.5, 0.8, 1.0]) if i % 3 else rng.random()
        plan = torch.tensor([[rng.random() < density for _ in range(KV)] for _ in range(L)], dtype=torch.bool)
        seq_len = rng.choice([rng.randint(1, 40), rng.randint(1, 5000), rng.randint(1, 200_000)])
        window = rng.choice([1, rng.randint(1, 64), rng.randint(1, 2048)])
        _check(fn, plan, seq_len, rng.randint(0, 8), window)
    _against_cache(fn, _plan([[0, 1], [0, 0], [1, 1]]), 3, 4, [2, 1, 1, 5, 1, 1, 9], dtype=torch.float16)
    _against_cache(fn, _plan([[0, 0]]), 0, 2, [1, 1, 1, 3], dtype=torch.bfloat16)  # no sinks, no full head
    print("hidden tests passed")
