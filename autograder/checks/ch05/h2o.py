"""H2O's two exercises: `h2o_scores` (the score update) and `h2o_keep` (which tokens stay).

`h2o_scores` is compared with a float64 sum written from its docstring, on random softmax weights (the
causal rows of T new queries over n keys) and on the weights a real `H2OKVCache` observed while a GQA
stream ran through `kvlib.cache.base.attend`. Shapes separate the grouping slips (G = 4 query heads per
KV head with KV = 2: contiguous blocks and `h % KV` differ), T > 1 prefill chunks separate "last query
only", old scores that are not zero separate "new weights only", fp16/bf16 weights must give float32
scores (and scores too large for a 16-bit detour), inputs must be left alone and results not reused.

`h2o_keep` is compared with a brute force written from its docstring (protected tokens by position,
then the `heavy` highest scores of the others, ties to the lower position). States come from a real
`H2OKVCache` run (rows and heads holding different tokens) and from a seeded generator that follows the
docstring's preconditions only (increasing positions below `seen`), which also reaches what a cache never
produces but the rule defines: sinks gone from some rows, gaps in the recent window, the window
overlapping the sinks, fewer candidates than `heavy`, heavy = 0, recent = 0, ties at the cut. kvlib's
`h2o_keep_mask` keeps the top num_sinks + heavy + recent with protected tokens first, which equals the
docstring's rule only when exactly num_sinks + recent tokens are protected (every state a real cache
evicts from), so it is used for nothing here but delegation. A wrong mask is matched against the
classic wrong rules (ties, heavy counted with the protected tokens, the window off by one, sinks or
window by index, one top-k over all rows, smallest scores, ...) and the message names the one it matches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..common import CheckFailed, assert_shape, expect, matches
from ..delegation import graded
from ..fixtures import generator
from ..properties import assert_unchanged, call_pure, snapshot

SCORES_REFERENCES = ("kvlib.cache.evict.h2o_accumulate", "kvlib.cache.evict.H2OKVCache")
KEEP_REFERENCES = ("kvlib.cache.evict.h2o_keep_mask", "kvlib.cache.evict.H2OKVCache")

# A 16-bit weight converts to float32 exactly, so 16-bit inputs allow no more error than float32 ones: a
# sum taken in 16 bits (then converted) is the mistake, off by about 1e-3 (fp16) to 1e-2 (bf16) relative.
_ROUNDING = {torch.float32: 0.0, torch.float16: 0.0, torch.bfloat16: 0.0}


# --- states: random softmax weights, and what a real H2O cache sees -----------------------------------


def _weights(gen: torch.Generator, B: int, H: int, T: int, n: int, dtype: torch.dtype) -> Tensor:
    """Causal softmax rows of T new queries (the last T positions) over n keys, peaked, in `dtype`."""
    logits = torch.randn(B, H, T, n, generator=gen) * 3
    rows = torch.arange(n - T, n)[:, None]
    logits = logits.masked_fill(torch.arange(n)[None, :] > rows, float("-inf"))
    return torch.softmax(logits, dim=-1).to(dtype)


def _old_scores(gen: torch.Generator, B: int, KV: int, n: int, scale: float = 4.0) -> Tensor:
    return torch.rand(B, KV, n, generator=gen) * scale


def _cache_run(
    seed: int,
    B: int,
    H: int,
    KV: int,
    chunks: tuple[int, ...],
    heavy: int,
    recent: int,
    num_sinks: int,
    dtype: torch.dtype = torch.float32,
) -> tuple[list[tuple[Tensor, Tensor]], list[tuple[Tensor, Tensor, int]]]:
    """Run random q, k, v through a real H2OKVCache (via attend, as the model does) and record, at each
    step, (scores, weights) before the update and (scores, positions, seen) before every eviction."""
    from kvlib.cache.base import ForwardBatch, attend
    from kvlib.cache.evict import H2OKVCache

    observed: list[tuple[Tensor, Tensor]] = []
    choices: list[tuple[Tensor, Tensor, int]] = []

    class Recorder(H2OKVCache):
        def observe_attention(self, layer: int, weights: Tensor) -> None:
            observed.append((self.scores[layer].clone(), weights.detach().clone()))
            super().observe_attention(layer, weights)

        def keep_mask(self, layer: int) -> Tensor:
            choices.append((self.scores[layer].clone(), self.positions[layer].clone(), self.seen[layer]))
            return super().keep_mask(layer)

    gen, D = generator(seed), 8
    cache = Recorder(1, heavy, recent, num_sinks)
    dummy = torch.zeros(1, 1, 1, D)
    with torch.no_grad():
        for T in chunks:
            q = (torch.randn(B, H, T, D, generator=gen) * 2).to(dtype)
            k = (torch.randn(B, KV, T, D, generator=gen) * 2).to(dtype)
            v = torch.randn(B, KV, T, D, generator=gen).to(dtype)
            batch = ForwardBatch(torch.zeros(B, T, dtype=torch.long), None, dummy, dummy, 10000.0)
            attend(cache, 0, q, k, v, batch)
    return observed, choices


# --- h2o_scores -------------------------------------------------------------------------------------


def scores_reference(scores: Tensor, weights: Tensor) -> Tensor:
    """float64: scores plus each key's weights summed over the T queries and the G heads of its group."""
    B, KV, n = scores.shape
    H, T = weights.shape[1], weights.shape[2]
    w = weights.double().reshape(B, KV, H // KV, T, n)  # heads g*G .. g*G+G-1 -> KV head g
    return scores.double() + w.sum(dim=(2, 3))


def _score_variants(scores: Tensor, weights: Tensor) -> dict[str, Tensor]:
    B, KV, n = scores.shape
    H, T = weights.shape[1], weights.shape[2]
    G = H // KV
    s = scores.double()
    w = weights.double().reshape(B, KV, G, T, n)
    received = w.sum(dim=(2, 3))
    variants = {
        "query heads grouped as h % KV (KV head g read by heads g, g + KV, g + 2*KV, ...): heads "
        "g*G .. g*G+G-1 read KV head g, so reshape the head axis as (KV, G), not (G, KV)": s
        + weights.double().reshape(B, G, KV, T, n).sum(dim=(1, 3)),
        "only the weights of this step were returned: add them to the scores received so far "
        "(scores + received)": received,
        "the mean over the T queries where the sum belongs (every new query adds its weights)": s
        + w.sum(2).mean(2),
        "the mean over the G query heads of a group where the sum belongs (every head of the group adds "
        "its weights)": s + w.mean(2).sum(2),
        "the mean over the queries and the heads where the sum belongs": s + w.mean(dim=(2, 3)),
        "only the last query row was counted: with T > 1 new tokens (a prefill chunk) sum over all T "
        "query rows (dim 2 of weights)": s + w[:, :, :, -1].sum(2),
        "only the first query row was counted: sum over all T query rows (dim 2 of weights)": s
        + w[:, :, :, 0].sum(2),
        "summed over the key axis (each softmax row sums to 1): sum over the queries (dim 2) and the "
        "heads, keeping one score per key": s + w.sum(dim=(2, 4))
        if T == n
        else s + w.sum(dim=(2, 3, 4))[..., None],
        "every group's weights were added to every KV head (summed over all H heads): sum over the G "
        "heads of each group only": s + weights.double().sum(dim=(1, 2))[:, None],
    }
    return variants


def _check_scores(fn: Callable[..., Any], scores: Tensor, weights: Tensor, label: str) -> Tensor:
    B, KV, n = scores.shape
    H, T = weights.shape[1], weights.shape[2]
    what = (
        f"h2o_scores ({label}: scores [B={B}, KV={KV}, n={n}], {weights.dtype} weights [B, H={H}, T={T}, n])"
    )
    got = call_pure(fn, scores, weights, what=what)
    expect(isinstance(got, torch.Tensor), f"{what} must return a torch.Tensor, got {type(got).__name__}")
    if tuple(got.shape) != (B, KV, n):
        hints = {
            (B, H, n): "one score per query head: sum over the G query heads that share a KV head",
            (B, KV, T): "summed over the key axis: sum over the queries (dim 2) and keep one score per key",
            (B, KV, T, n): "the queries are not summed: sum over dim 2 of the weights too",
            (B, KV, H // KV, n): "the G heads of a group are not summed",
        }
        hint = hints.get(tuple(got.shape), "one score per batch row, KV head and key")
        assert_shape(got, (B, KV, n), what, hint)
    expect(
        got.dtype == torch.float32,
        f"{what} must return float32 scores, got {got.dtype}: the scores are float32 whatever the weights' "
        "dtype (convert the weights with .float() before summing)",
    )
    want = scores_reference(scores, weights)
    received_max = float((want - scores.double()).abs().max()) if want.numel() else 0.0
    atol = 1e-5 * (1 + received_max) + _ROUNDING[weights.dtype] * received_max
    err = float((got.double() - want).abs().max()) if want.numel() else 0.0
    if err <= atol + 1e-6 * float(want.abs().max()) and not bool(torch.isnan(got).any()):
        return got
    for message, candidate in _score_variants(scores, weights).items():
        if not matches(candidate, want, atol) and matches(
            got, candidate, atol + 1e-6 * float(want.abs().max())
        ):
            raise CheckFailed(f"{what} is wrong: {message}")
    if weights.dtype != torch.float32 and err <= 2 * torch.finfo(weights.dtype).eps * float(want.abs().max()):
        raise CheckFailed(
            f"{what} is wrong (max abs error {err:.3g}, a {weights.dtype} rounding of the scores): "
            f"the scores were rounded to {weights.dtype} on the way, and 16-bit scores lose accumulated "
            "attention; convert the weights to float32 (.float()) and add in float32"
        )
    raise CheckFailed(
        f"{what} is wrong (max abs error {err:.3g}): return scores plus, for every key, its weights summed "
        "over the T queries and over the G = H // KV query heads of its group (heads g*G .. g*G+G-1 read KV "
        "head g), in float32"
    )


def _random_scores_case(
    fn: Callable[..., Any], seed: int, B: int, H: int, KV: int, T: int, n: int, dtype=torch.float32, scale=4.0
) -> Tensor:
    gen = generator(seed)
    scores, weights = _old_scores(gen, B, KV, n, scale), _weights(gen, B, H, T, n, dtype)
    return _check_scores(fn, scores, weights, f"random weights, seed {seed}")


def _cache_scores_cases(
    fn: Callable[..., Any], label: str, *run: Any, weights_dtype: torch.dtype = torch.float32, **kw: Any
) -> None:
    """Every step of a real cache run; `weights_dtype` casts the weights it observed (kvlib's attention
    hands float32, a model in fp16 with eager attention hands fp16)."""
    observed, _ = _cache_run(*run, **kw)
    for step, (scores, weights) in enumerate(observed):
        _check_scores(fn, scores, weights.to(weights_dtype), f"{label}, step {step + 1}")


@graded("h2o_scores", *SCORES_REFERENCES)
def h2o_scores_visible(fn: Callable[..., Any]) -> None:
    _random_scores_case(fn, 0, 2, 8, 2, 6, 6, scale=0.0)  # a 6-token prefill (T = n), nothing received yet
    _random_scores_case(fn, 1, 2, 8, 2, 3, 11)  # batch 2, GQA 4 (KV 2), a 3-token chunk after 8 keys
    _random_scores_case(fn, 2, 2, 8, 2, 1, 6)  # one new token
    # inside a real H2O cache (8 query heads on 2 KV heads): prefill, then tokens past its budget of 4
    _cache_scores_cases(fn, "an H2O cache with 2 sinks, 2 recent", 5, 2, 8, 2, (4, 1, 2, 1), 0, 2, 2)
    print("h2o_scores: visible tests passed")


@graded("h2o_scores", *SCORES_REFERENCES)
def h2o_scores_hidden(fn: Callable[..., Any]) -> None:
    _random_scores_case(fn, 0, 2, 8, 2, 6, 6, scale=0.0)
    _random_scores_case(fn, 1, 2, 8, 2, 3, 11)
    _random_scores_case(fn, 3, 1, 4, 4, 1, 1)  # no GQA, the very first token
    _random_scores_case(fn, 4, 1, 4, 1, 5, 5)  # one KV head for all (MQA), a prefill: T = n
    _random_scores_case(fn, 5, 3, 6, 2, 4, 9)  # G = 3
    _random_scores_case(fn, 6, 2, 8, 2, 17, 33)  # past the visible sizes
    _random_scores_case(fn, 7, 2, 16, 4, 1, 100)
    _random_scores_case(fn, 8, 1, 8, 2, 2, 511)
    for seed, dtype in ((9, torch.float16), (10, torch.bfloat16)):
        # scores too large for a 16-bit detour (spacing 0.5 in fp16 and 4 in bf16 near 1000)
        _random_scores_case(fn, seed, 2, 8, 2, 3, 12, dtype, scale=1000.0)
        _random_scores_case(fn, seed + 10, 2, 4, 2, 1, 7, dtype)
    _cache_scores_cases(fn, "an H2O cache, 3 heavy, 2 recent", 11, 3, 8, 2, (6, 1, 3, 1, 1, 2), 3, 2, 0)
    _cache_scores_cases(
        fn, "an H2O cache fed float16 weights", 12, 2, 4, 2, (5, 1, 2, 1), 1, 1, 1,
        dtype=torch.float16, weights_dtype=torch.float16,
    )  # fmt: skip
    # a result must not be a buffer that the next call writes into
    gen = generator(13)
    first = _check_scores(
        fn, _old_scores(gen, 2, 2, 9), _weights(gen, 2, 8, 2, 9, torch.float32), "call 1 of 2"
    )
    copy = snapshot(first)
    _check_scores(fn, _old_scores(gen, 2, 2, 9), _weights(gen, 2, 8, 2, 9, torch.float32), "call 2 of 2")
    assert_unchanged(
        first, copy, "the scores h2o_scores returned",
        "the next call wrote into the tensor it returned before (a reused buffer); return a new tensor "
        "each call",
    )  # fmt: skip
    print("h2o_scores: hidden tests passed")


# --- h2o_keep ---------------------------------------------------------------------------------------


def keep_reference(
    scores: Tensor, positions: Tensor, seen: int, num_sinks: int, heavy: int, recent: int
) -> Tensor:
    """The docstring's rule, one row and head at a time (independent of kvlib's h2o_keep_mask)."""
    return _brute(scores, positions, seen, num_sinks, heavy, recent)


def _brute(
    scores: Tensor,
    positions: Tensor,
    seen: int,
    num_sinks: int,
    heavy: int,
    recent: int,
    *,
    sinks: str = "position",  # "index": the first num_sinks entries; "le": positions <= num_sinks
    window: str = "position",  # "index": last `recent` entries; "gt": > seen - recent; "wide": one more
    ties: str = "lower",  # "higher": a tie keeps the later position
    largest: bool = True,
    heavy_of: str = "others",  # "all": top-heavy over every token, protected included
) -> Tensor:
    B, KV, n = scores.shape
    keep = torch.zeros(B, KV, n, dtype=torch.bool)
    s, p = scores.tolist(), positions.tolist()
    for b in range(B):
        for g in range(KV):
            cands = []
            for i in range(n):
                pos = p[b][g][i]
                sink = {"position": pos < num_sinks, "index": i < num_sinks, "le": pos <= num_sinks}[sinks]
                win = {
                    "position": pos >= seen - recent,
                    "index": i >= n - recent,
                    "gt": pos > seen - recent,
                    "wide": pos >= seen - recent - 1,
                }[window]
                if sink or win:
                    keep[b, g, i] = True
                if heavy_of == "all" or not (sink or win):
                    score = s[b][g][i] if largest else -s[b][g][i]
                    cands.append((-score, pos if ties == "lower" else -pos, i))
            for _, _, i in sorted(cands)[:heavy]:
                keep[b, g, i] = True
    return keep


def _protected(positions: Tensor, seen: int, num_sinks: int, recent: int) -> Tensor:
    return (positions < num_sinks) | (positions >= seen - recent)


def _keep_variants(
    scores: Tensor, positions: Tensor, seen: int, num_sinks: int, heavy: int, recent: int
) -> dict[str, Tensor | None]:
    args = (scores, positions, seen, num_sinks, heavy, recent)
    protected = _protected(positions, seen, num_sinks, recent)
    B, KV, n = scores.shape
    cand = scores.masked_fill(protected, float("-inf"))

    def top_flat(k: int, dims: int) -> Tensor:  # one top-k over the last `dims` axes together
        flat = cand.flatten(-dims) if dims > 1 else cand
        order = torch.argsort(flat, dim=-1, descending=True, stable=True)[..., :k]
        picked = torch.zeros_like(flat, dtype=torch.bool).scatter(-1, order, True) & (flat > float("-inf"))
        return protected | picked.view(B, KV, n)

    budget_key = scores.masked_fill(protected, float("inf"))
    order = torch.argsort(budget_key, dim=-1, descending=True, stable=True)[..., : num_sinks + heavy + recent]
    budget = torch.zeros_like(protected).scatter(-1, order, True)
    ranked = torch.sort(cand, dim=-1, descending=True).values
    cut = ranked[..., heavy - 1 : heavy] if 0 < heavy <= n else ranked[..., -1:]
    threshold = protected | ((cand >= cut) & ~protected)
    return {
        "a tie in score kept the later position: a tie keeps the LOWER position (a stable sort, or "
        "sort by score then position)": _brute(*args, ties="higher"),
        "the heavy hitters were chosen among all tokens, the sinks and the recent window included, so they "
        "took heavy-hitter places: choose the `heavy` highest scores among the OTHER tokens only": _brute(
            *args, heavy_of="all"
        ),
        "the recent window is one token short (positions > seen - recent): it is positions >= seen "
        "- recent": _brute(*args, window="gt"),
        "the recent window is one token too long (positions >= seen - recent - 1): it is positions >= seen "
        "- recent": _brute(*args, window="wide"),
        "the sinks are one token too many (positions <= num_sinks): they are positions < num_sinks": _brute(
            *args, sinks="le"
        ),
        "the sinks were taken by index (the first num_sinks entries) instead of by position: after "
        "evictions rows and heads hold different tokens, so test positions < num_sinks": _brute(
            *args, sinks="index"
        ),
        "the recent window was taken by index (the last `recent` entries) instead of by position: test "
        "positions >= seen - recent (a row need not hold every recent token)": _brute(*args, window="index"),
        "you kept num_sinks + heavy + recent tokens in total; that equals the rule only when exactly "
        "num_sinks + recent tokens are protected. Here fewer are (sinks missing from a row, gaps in the "
        "recent window, or the window overlapping the sinks): keep every protected token plus exactly "
        "`heavy` of the others (all of them if fewer)": budget,
        "recent = 0 protected every token (x[..., -recent:] is the whole axis when recent is 0): with "
        "recent = 0 there is no recent window": torch.ones_like(protected) if recent == 0 else None,
        "the heavy hitters were chosen once over all batch rows and KV heads together (one top-k over the "
        "flattened tensor): choose `heavy` separately in every batch row and KV head (top-k along the last "
        "axis)": top_flat(heavy * B * KV, 3) if B * KV > 1 else None,
        "the heavy hitters were chosen once over all batch rows and KV heads together (`heavy` in all, one "
        "top-k over the flattened tensor): choose `heavy` separately in every batch row and KV head (top-k "
        "along the last axis)": top_flat(heavy, 3) if B * KV > 1 else None,
        "the heavy hitters were chosen once per batch row over all its KV heads: choose `heavy` separately "
        "in every KV head (top-k along the last axis)": top_flat(heavy * KV, 2) if KV > 1 else None,
        "the LOWEST scores were kept: keep the `heavy` highest (largest=True, descending=True)": _brute(
            *args, largest=False
        ),
        "with heavy = 0 no heavy hitter is kept, only the sinks and the recent window (an index heavy - 1 "
        "is -1, the last element, when heavy is 0)": torch.ones_like(protected) if heavy == 0 else None,
        "every token scoring at least the heavy-th highest score was kept, so a tie at the cut kept more "
        "than `heavy`: keep exactly `heavy`, a tie going to the lower position": threshold,
        "only the sinks and the recent window were kept: add the `heavy` highest-scoring other tokens "
        "(all of them when there are fewer than heavy)": protected,
    }


def _describe(scores: Tensor, positions: Tensor, seen: int, num_sinks: int, heavy: int, recent: int) -> str:
    B, KV, n = scores.shape
    return (
        f"scores [B={B}, KV={KV}, n={n}], seen={seen}, num_sinks={num_sinks}, heavy={heavy}, recent={recent}"
    )


def _check_keep(
    fn: Callable[..., Any],
    scores: Tensor,
    positions: Tensor,
    seen: int,
    num_sinks: int,
    heavy: int,
    recent: int,
    label: str,
) -> Tensor:
    args = (scores, positions, seen, num_sinks, heavy, recent)
    what = f"h2o_keep ({label}; {_describe(*args)})"
    got = call_pure(fn, *args, what=what)
    expect(isinstance(got, torch.Tensor), f"{what} must return a torch.Tensor, got {type(got).__name__}")
    assert_shape(got, tuple(scores.shape), what, "one True/False per kept token, [B, KV, n]")
    expect(
        got.dtype == torch.bool,
        f"{what} must return a torch.bool mask, got {got.dtype}: build it from comparisons and | (or "
        "convert with .bool()), not from 0/1 numbers",
    )
    want = keep_reference(*args)
    if torch.equal(got, want):
        return got
    for message, candidate in _keep_variants(*args).items():
        if candidate is not None and not torch.equal(candidate, want) and torch.equal(got, candidate):
            raise CheckFailed(f"{what} is wrong: {message}")
    b, g, i = (got != want).nonzero()[0].tolist()
    pos, score = int(positions[b, g, i]), float(scores[b, g, i])
    kind = (
        "a sink" if pos < num_sinks else "in the recent window" if pos >= seen - recent else "not protected"
    )
    raise CheckFailed(
        f"{what} is wrong: in batch row {b}, KV head {g} the token at position {pos} ({kind}, score "
        f"{score:.4g}) should be {'kept' if want[b, g, i] else 'evicted'}; you kept {int(got[b, g].sum())} "
        f"tokens there, expected {int(want[b, g].sum())}. Keep the sinks (positions < num_sinks), the recent "
        "window (positions >= seen - recent) and, of the others, the `heavy` highest scores (ties: the lower "
        "position), separately in every batch row and KV head"
    )


def _state(
    seed: int,
    B: int,
    KV: int,
    n: int,
    seen: int,
    *,
    sinks_missing: bool = False,
    window_gaps: bool = False,
    num_sinks: int = 0,
    recent: int = 0,
    levels: int = 0,
) -> tuple[Tensor, Tensor]:
    """A state that follows the docstring's preconditions: in every row and head, n increasing positions
    below `seen`, different per row and head. Unless `sinks_missing` / `window_gaps`, every position
    < num_sinks and >= seen - recent is present (as in a real cache). `levels` > 0: scores k / levels
    with k in 0..levels (many ties, zeros included)."""
    gen = generator(seed)
    pos = torch.empty(B, KV, n, dtype=torch.long)
    for b in range(B):
        for g in range(KV):
            must = set()
            if not sinks_missing:
                must |= set(range(min(num_sinks, seen)))
            if not window_gaps:
                must |= set(range(max(0, seen - recent), seen))
            must = set(sorted(must)[:n])
            rest = torch.tensor(sorted(set(range(seen)) - must), dtype=torch.long)
            rest = rest[torch.randperm(len(rest), generator=gen)[: n - len(must)]]
            pos[b, g] = torch.sort(torch.cat([torch.tensor(sorted(must), dtype=torch.long), rest])).values
    if levels:
        scores = torch.randint(0, levels + 1, (B, KV, n), generator=gen).float() / levels
    else:
        scores = torch.rand(B, KV, n, generator=gen) * 3
    return scores, pos


def _random_keep(
    fn: Callable[..., Any],
    seed: int,
    B: int,
    KV: int,
    n: int,
    seen: int,
    num_sinks: int,
    heavy: int,
    recent: int,
    label: str,
    **kw: Any,
) -> Tensor:
    scores, pos = _state(seed, B, KV, n, seen, num_sinks=num_sinks, recent=recent, **kw)
    return _check_keep(fn, scores, pos, seen, num_sinks, heavy, recent, label)


def _cache_keep_cases(fn: Callable[..., Any], label: str, *run: Any, **kw: Any) -> None:
    _, choices = _cache_run(*run, **kw)
    heavy, recent, num_sinks = run[5], run[6], run[7]
    for step, (scores, positions, seen) in enumerate(choices):
        _check_keep(fn, scores, positions, seen, num_sinks, heavy, recent, f"{label}, eviction {step + 1}")


def _visible_state(ties: bool) -> tuple[Tensor, Tensor, int]:
    """Two rows, two KV heads, each holding other tokens after evictions; with `ties`, tied scores at the
    cut in three of the four (else the same scores made distinct, lower positions a little higher)."""
    positions = torch.tensor(
        [
            [[0, 1, 4, 7, 9, 12, 17, 18, 19], [0, 1, 2, 5, 6, 11, 17, 18, 19]],
            [[0, 1, 3, 8, 10, 14, 17, 18, 19], [0, 1, 6, 9, 13, 15, 17, 18, 19]],
        ]
    )
    scores = torch.tensor(
        [
            [[0.1, 0.2, 2.0, 1.5, 1.5, 0.7, 0.1, 0.0, 0.0], [3.0, 0.1, 0.4, 0.9, 2.2, 1.1, 0.3, 0.5, 0.0]],
            [[0.0, 0.0, 0.6, 0.6, 0.2, 2.5, 1.0, 0.2, 0.1], [0.4, 0.3, 1.2, 0.8, 0.8, 0.8, 0.0, 0.1, 0.2]],
        ]
    )
    if not ties:
        scores = scores - 0.01 * torch.arange(9) / 9
    return scores, positions, 20


def _visible_keep_cases(fn: Callable[..., Any]) -> None:
    for ties in (False, True):
        scores, positions, seen = _visible_state(ties)
        label = "two rows and KV heads holding different tokens" + (", tied scores" if ties else "")
        _check_keep(fn, scores, positions, seen, 2, 2, 3, label)
    # a real H2O cache (8 query heads on 2 KV heads) evicting every step: the state before each eviction
    _cache_keep_cases(
        fn, "an H2O cache with 1 sink, 3 heavy, 2 recent", 21, 2, 8, 2, (7, 1, 2, 1, 1), 3, 2, 1
    )


def _near_ties_far_apart(fn: Callable[..., Any]) -> None:
    """Scores one or two float32 steps apart on tokens thousands of positions apart: only the score decides.
    A tie-break folded into the score (score - eps * position) picks the earlier token here."""
    n, seen = 12, 6000
    positions = torch.linspace(0, seen - 1, n).long().expand(1, 2, n).contiguous()  # (1, 2, 12) far apart
    steps = torch.tensor([[0, 3, 1, 0, 2, 0, 3, 1, 0, 2, 0, 0], [2, 0, 0, 3, 1, 0, 2, 1, 3, 0, 0, 0]])
    scores = (0.75 + steps.float() * 2.0**-23).view(1, 2, n)  # adjacent float32 values near 0.75
    _check_keep(fn, scores, positions, seen, 0, 4, 2, "scores a few float32 steps apart, positions far apart")


@graded("h2o_keep", *KEEP_REFERENCES)
def h2o_keep_visible(fn: Callable[..., Any]) -> None:
    _visible_keep_cases(fn)
    print("h2o_keep: visible tests passed")


@graded("h2o_keep", *KEEP_REFERENCES)
def h2o_keep_hidden(fn: Callable[..., Any]) -> None:
    _visible_keep_cases(fn)
    _cache_keep_cases(fn, "an H2O cache, 4 heavy, 3 recent", 22, 3, 4, 4, (9, 1, 3, 2, 1), 4, 3, 0)
    _cache_keep_cases(fn, "an H2O cache with no heavy hitters", 23, 2, 6, 3, (6, 2, 1), 0, 2, 1)
    # edge cases the docstring names, each in rows and heads holding different tokens
    _random_keep(fn, 31, 2, 2, 12, 30, 2, 3, 3, "many tied scores", levels=2)
    _random_keep(fn, 32, 2, 3, 10, 25, 2, 0, 3, "heavy = 0")
    _random_keep(fn, 33, 2, 2, 9, 20, 2, 4, 0, "recent = 0")
    _random_keep(fn, 34, 2, 2, 9, 20, 0, 3, 2, "num_sinks = 0")
    _random_keep(fn, 35, 2, 2, 8, 16, 2, 10, 2, "fewer unprotected tokens than heavy (keep them all)")
    _random_keep(fn, 36, 1, 2, 6, 6, 2, 1, 5, "the recent window overlapping the sinks")
    _random_keep(fn, 37, 2, 2, 7, 7, 1, 2, 2, "nothing evicted yet (positions 0 .. seen - 1)")
    _random_keep(fn, 38, 1, 1, 1, 1, 0, 0, 1, "one token")
    # the docstring's rule, beyond the states a cache produces: sinks gone from some rows, a window with gaps
    _random_keep(fn, 39, 2, 2, 14, 40, 3, 2, 4, "sinks missing from some rows", sinks_missing=True)
    _random_keep(fn, 40, 2, 2, 14, 40, 2, 2, 5, "a recent window with gaps", window_gaps=True)
    _random_keep(fn, 41, 3, 4, 40, 300, 4, 16, 8, "sizes past the visible ones", levels=8)
    _random_keep(fn, 42, 2, 2, 257, 511, 4, 100, 64, "a long cache")
    _near_ties_far_apart(fn)
    gen = generator(43)
    for case in range(30):
        B, KV = int(torch.randint(1, 4, (1,), generator=gen)), int(torch.randint(1, 4, (1,), generator=gen))
        seen = int(torch.randint(1, 60, (1,), generator=gen))
        n = int(torch.randint(1, seen + 1, (1,), generator=gen))
        s, h, r = (int(x) for x in torch.randint(0, 7, (3,), generator=gen))
        flags = torch.randint(0, 2, (3,), generator=gen).tolist()
        _random_keep(
            fn, 100 + case, B, KV, n, seen, s, h, r, f"random state {case + 1}",
            sinks_missing=bool(flags[0]), window_gaps=bool(flags[1]), levels=4 * flags[2],
        )  # fmt: skip
    # a result must not be a buffer that the next call writes into
    first = _random_keep(fn, 44, 2, 2, 10, 20, 1, 2, 2, "call 1 of 2")
    copy = snapshot(first)
    _random_keep(fn, 45, 2, 2, 10, 20, 1, 5, 2, "call 2 of 2")
    assert_unchanged(
        first, copy, "the mask h2o_keep returned",
        "the next call wrote into the mask it returned before (a reused buffer); return a new tensor "
        "each call",
    )  # fmt: skip
    print("h2o_keep: hidden tests passed")
