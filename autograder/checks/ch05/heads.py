"""Exercise `distant_attention`: the attention weight a sinks + window head would lose, per KV head.

The answer is one float32 number per KV head, so it is checked by value, on many inputs, against
`kvlib.cache.heads.distant_attention`. The inputs are real causal softmax weights: random logits masked
above the diagonal and softmaxed (every head given its own recency slope and the first keys a boost, so
heads differ and the sinks carry weight: a wrong head grouping or sinks counted as lost change the
answer a lot), and the weights of a tiny model's layers captured through a cache's `observe_attention`
(GQA ratios 1, 2 and 4), every batch row different. The hidden checks add float16, bfloat16 and float64
weights at long T (the result must be float32 and within 1e-6 of the largest score, which sums kept in
float16, a float16 result or 1 - the kept weight miss), the shortest T the spec allows (one query
losing one key), num_sinks 0, window 1, GQA ratios 1, 2 and 4 (and one KV head), the same T called with
other sinks and windows in a row (a mask cached by T alone), the inputs left unchanged, a first result
unchanged by a second call, and a seeded sweep. A wrong answer is matched against the classic wrong
variants (queries that lose nothing averaged in, the window or the sinks off by one, sinks counted as
lost, query heads grouped h % KV, a sum over the group or the batch, one batch row, the mean weight per
lost key, 1 - the kept weight on low-precision rows) and the message names the one it reproduces.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import torch

from ..common import CheckFailed, assert_shape, expect, matches
from ..delegation import graded
from ..fixtures import generator, tiny_model
from ..properties import PAST_VISIBLE_LENGTHS, assert_unchanged, call_pure, snapshot

# kvlib's function has the exercise's signature; head_importance(method="distant_attention") and the cache
# that records it per layer would hand in the same numbers.
REFERENCES = (
    "kvlib.cache.heads.distant_attention",
    "kvlib.cache.heads.head_importance",
    "kvlib.cache.heads._DistantAttentionCache",
)

# Relative to the largest score: correct float32 answers differ from the reference by about 2e-7 (float32
# rounding of the result, summation order); sums rounded to float16 are off by 2e-6 to 1e-5, a float16
# result by 1e-4, 1 - the kept weight of float16/bfloat16 rows by 1e-5.
ATOL, RTOL = 1e-7, 1e-6
LOW_PRECISION = (torch.float16, torch.bfloat16)


# --- inputs ----------------------------------------------------------------------------------------------


def causal_weights(B: int, H: int, T: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Causal softmax weights [B, H, T, T]: random logits, a recency slope per head, the first keys boosted.

    Computed in float64, then cast: zero past the diagonal, every row and head different.
    """
    gen = generator(seed)
    logits = 2.0 * torch.randn(B, H, T, T, generator=gen, dtype=torch.float64)
    p = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    slopes = torch.linspace(0.0, 0.4, H, dtype=torch.float64)[torch.randperm(H, generator=gen)]
    logits = logits - slopes[:, None, None] * (p - j).clamp(min=0)  # some heads local, some not
    logits[..., :2] += 2.0 + torch.rand(B, H, 1, 1, generator=gen, dtype=torch.float64)  # sink-like keys
    return logits.masked_fill(j > p, float("-inf")).softmax(-1).to(dtype)


def _recorder(num_layers: int) -> Any:
    """A dense cache that keeps each layer's attention weights (B, H, T, T) from one forward."""
    from kvlib.cache.dense import NaiveKVCache

    class Recorder(NaiveKVCache):
        weights: dict[int, torch.Tensor]

        def observe_attention(self, layer: int, weights: torch.Tensor) -> None:
            self.weights[layer] = weights.detach().clone()

    recorder = Recorder(num_layers)
    recorder.weights = {}
    return recorder


def model_weights(B: int, T: int, num_heads: int, num_kv_heads: int, seed: int) -> list[torch.Tensor]:
    """Each layer's causal softmax weights [B, H, T, T] (float32) of a tiny model on random tokens."""
    model = tiny_model(seed=seed, num_heads=num_heads, num_kv_heads=num_kv_heads, max_seq_len=T)
    tokens = torch.randint(0, model.config.vocab_size, (B, T), generator=generator(seed + 1))
    recorder = _recorder(model.config.num_layers)
    with torch.no_grad():
        model(tokens, cache=recorder)
    return [recorder.weights[layer] for layer in range(model.config.num_layers)]


# --- the answer and its classic wrong variants (float64) ----------------------------------------------------


def reference(weights: torch.Tensor, num_kv_heads: int, num_sinks: int, window: int) -> torch.Tensor:
    from kvlib.cache.heads import distant_attention

    return distant_attention(weights, num_kv_heads, num_sinks, window)


def _score(
    weights: torch.Tensor,
    KV: int,
    S: int,
    W: int,
    *,
    lo: int | None = None,
    hi: int = 0,
    first: int | None = None,
    stop: int = 0,
    end: bool = False,
    per_query: str = "sum",
    heads: str = "grouped",
    group: str = "mean",
    batch: str = "mean",
) -> torch.Tensor:
    """The score with one chosen mistake, in float64 (the defaults give the right answer).

    Lost keys of query p: lo <= j < p - W + hi (T - W + hi with `end`); queries first .. T-1-stop;
    per_query sum, mean (per lost key), pooled (total over (query, key) pairs) or complement (1 - kept);
    heads grouped (h // G) or tiled (h % KV); group and batch reduced by mean, sum or first.
    """
    w = weights.detach().double()
    B, H, T, _ = w.shape
    G = H // KV
    p = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    lo = S if lo is None else lo
    first = S + W + 1 if first is None else first
    lost_keys = (j >= lo) & (j < (T if end else p) - W + hi)  # (T, T)
    queries = slice(first, T - stop)
    if per_query == "complement":
        lost = (1.0 - (w * ~lost_keys).sum(-1))[..., queries]
    else:
        lost = (w * lost_keys).sum(-1)[..., queries]  # (B, H, n)
    if per_query == "mean":
        lost = lost / lost_keys.sum(-1)[queries].clamp(min=1)
    if per_query == "pooled":
        per_head = lost.sum(-1) / max(int(lost_keys[queries].sum()), 1)  # (B, H)
    else:
        per_head = lost.mean(-1)
    per_head = per_head.view(B, KV, G) if heads == "grouped" else per_head.view(B, G, KV).transpose(1, 2)
    per_kv = {"mean": per_head.mean(-1), "sum": per_head.sum(-1)}[group]  # (B, KV)
    return {"mean": per_kv.mean(0), "sum": per_kv.sum(0), "first": per_kv[0]}[batch]


def _variants(weights: torch.Tensor, KV: int, S: int, W: int) -> dict[str, torch.Tensor]:
    """Classic wrong answers, each with the message that names it (the first one matched is reported)."""
    f = lambda **kw: _score(weights, KV, S, W, **kw)  # noqa: E731
    variants = {
        "you averaged over all T queries: average only over the queries that lose something "
        "(p > num_sinks + window, i.e. p = num_sinks + window + 1 .. T-1); the earlier ones lose nothing "
        "and would dilute the score": f(first=0),
        "you averaged in query p = num_sinks + window, which loses nothing: the first query that loses "
        "a key is p = num_sinks + window + 1": f(first=S + W),
        "you left out query p = num_sinks + window + 1 (it loses key num_sinks): average over "
        "p = num_sinks + window + 1 .. T-1": f(first=S + W + 2),
        "you left out the last query (p = T-1): average over p = num_sinks + window + 1 .. T-1, "
        "range(first, T)": f(stop=1),
        "the window is off by one: you counted key p - window as lost, but the window is the `window` "
        "keys just before p (p - window .. p-1), so the lost keys are j < p - window": f(hi=1),
        "the window is off by one (you counted key p - window as lost and started at query "
        "p = num_sinks + window): the window is the `window` keys just before p (p - window .. p-1), so "
        "the lost keys are j < p - window": f(hi=1, first=S + W),
        "the window is off by one: you kept window + 1 keys before p (key p - window - 1 is lost: the "
        "lost keys are num_sinks <= j < p - window)": f(hi=-1),
        "the sinks were counted as lost: a sinks + window head keeps keys 0 .. num_sinks-1, so the lost "
        "keys start at j = num_sinks": f(lo=0),
        "the sinks were counted as lost (keys from 0, queries from p = window + 1): a sinks + window "
        "head keeps keys 0 .. num_sinks-1, so the lost keys start at j = num_sinks": f(lo=0, first=W + 1),
        "the sinks are off by one: key num_sinks is not a sink (sinks are keys 0 .. num_sinks-1), the "
        "lost keys are num_sinks <= j < p - window": f(lo=S + 1),
        "you placed the window at the end of the sequence (j < T - window): each query p keeps the "
        "`window` keys just before itself, so its lost keys are j < p - window": f(end=True),
        "query heads grouped as h % num_kv_heads (interleaved): KV head g is read by the contiguous "
        "block of query heads g*G .. g*G+G-1 (head h reads KV head h // G, as repeat_kv lays them out)": f(
            heads="tiled"
        ),
        "you summed the G query heads of each group: take their mean": f(group="sum"),
        "query heads grouped as h % num_kv_heads and summed: KV head g is read by the contiguous block "
        "g*G .. g*G+G-1, and the score is the mean over those G heads": f(heads="tiled", group="sum"),
        "you summed over the B batch rows: average over them": f(batch="sum"),
        "only the first batch row counted: average over all B rows": f(batch="first"),
        "you averaged the weight per lost key (divided by the number of lost keys): a query's lost "
        "weight is the sum of its weights on the lost keys; average those sums over the queries": f(
            per_query="mean"
        ),
        "you divided the total lost weight by the number of (query, lost key) pairs: sum each query's "
        "lost weights, then average those sums over the queries": f(per_query="pooled"),
        "you computed 1 - (the weight on the sinks and the window): rows of float16/bfloat16 weights do "
        "not sum to exactly one, so sum the weights of the lost keys themselves": f(per_query="complement"),
        "you averaged only over the queries whose lost weight is not 0: every query that can lose "
        "something (p > num_sinks + window) counts, also one that put no weight on the lost keys": (
            _mean_over_losers(weights, KV, S, W)
        ),
        "you returned zeros: row p of weights holds query p's weights on keys 0 .. p (weights[b, h, p, j]); "
        "reading weights[..., j, p] sees only the zeros above the diagonal": torch.zeros(
            KV, dtype=torch.float64
        ),
    }
    return variants


def _mean_over_losers(weights: torch.Tensor, KV: int, S: int, W: int) -> torch.Tensor:
    """The mean lost weight over the (row, head, query) triples that lost more than nothing, per KV head."""
    B, H, T, _ = weights.shape
    p = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    lost = (weights.double() * ((j >= S) & (j < p - W))).sum(-1)[:, :, S + W + 1 :]  # (B, H, queries)
    lost = lost.reshape(B, KV, H // KV, -1)
    counted = (lost != 0).sum(dim=(0, 2, 3)).clamp_min(1)
    return lost.sum(dim=(0, 2, 3)) / counted


# --- one call --------------------------------------------------------------------------------------------


def _describe(weights: torch.Tensor, KV: int, S: int, W: int, source: str) -> str:
    B, H, T, _ = weights.shape
    dtype = str(weights.dtype).replace("torch.", "")
    return (
        f"distant_attention(weights [B={B}, H={H}, T={T}, T] {dtype} ({source}), num_kv_heads={KV}, "
        f"num_sinks={S}, window={W})"
    )


def _shape_hint(got: tuple[int, ...], B: int, H: int, KV: int, n: int) -> str:
    G = H // KV
    hints = [
        ((B, KV), "one score per batch row: average over the B rows too"),
        ((H,), f"one score per query head: average the G = {G} query heads of each KV head"),
        ((B, H), f"one score per batch row and query head: average over the B rows and the G = {G} query "
         "heads of each KV head"),
        ((KV, G), f"one score per query head: average over the G = {G} query heads of each group too"),
        ((KV, n), "one score per query: average over the queries that lose something"),
        ((), "return a 1-d tensor with one score per KV head, not a single number"),
        ((1, KV), "return a 1-d tensor [num_kv_heads] (no batch dimension)"),
        ((KV, 1), "return a 1-d tensor [num_kv_heads]"),
    ]  # fmt: skip
    found = [hint for shape, hint in hints if shape == got]
    return " or ".join(dict.fromkeys(found)) or (
        "one float32 score per KV head: average over the queries, the G query heads of the group and the "
        "B rows"
    )


def _check(
    fn: Callable[..., Any], weights: torch.Tensor, KV: int, S: int, W: int, source: str, note: str = ""
) -> torch.Tensor:
    """Call the learner's function once (inputs must stay unchanged) and compare it with the reference."""
    what = _describe(weights, KV, S, W, source)
    B, H, T, _ = weights.shape
    got = call_pure(fn, weights, KV, S, W, what="distant_attention")
    expect(isinstance(got, torch.Tensor), f"{what} must return a torch.Tensor, got {type(got).__name__}")
    assert_shape(got, (KV,), what, _shape_hint(tuple(got.shape), B, H, KV, T - S - W - 1))
    expect(
        got.dtype == torch.float32,
        f"{what} must return float32 whatever the dtype of weights, got {got.dtype}: convert the weights "
        "with .float() before summing (a mean of thousands of weights needs float32's digits; float16 "
        "keeps about 3)",
    )
    want = reference(weights, KV, S, W)
    err = (got.detach().double() - want.double()).abs().max().item()
    scale = want.abs().max().item()
    if err <= ATOL + RTOL * scale and not torch.isnan(got).any():
        return got
    suffix = f" {note}" if note else ""
    if torch.isnan(got).any() or torch.isinf(got).any():
        raise CheckFailed(f"{what} returned {got.tolist()}, which is not finite{suffix}")
    close = 2 * RTOL * scale + ATOL  # the variants are exact (float64); a float32 answer is within 2e-7
    for message, candidate in _variants(weights, KV, S, W).items():
        if matches(got, candidate, atol=close) and not matches(want, candidate, atol=close):
            raise CheckFailed(f"{what}: {message}{suffix}")
    if (got < -1e-6).any():
        wrap = (
            " With num_sinks = 0 there are no sinks: an index such as [num_sinks - 1] wraps around to the "
            "last key (-1) instead of meaning 'nothing before key 0'."
            if S == 0
            else ""
        )
        raise CheckFailed(
            f"{what} returned a negative score {got.tolist()}: weights are never negative, so neither is "
            f"the weight they put on lost keys.{wrap}{suffix}"
        )
    if weights.dtype in LOW_PRECISION and err <= 5e-2 * scale:
        raise CheckFailed(
            f"{what} is off by {err:.2g} (largest score {scale:.3g}): your sums lost digits in "
            f"{weights.dtype}; convert the weights to float32 (weights.float()) before summing or "
            "accumulating, and keep the sums in float32 (float16 keeps about 3 significant digits, "
            f"bfloat16 2){suffix}"
        )
    raise CheckFailed(
        f"{what} is wrong (max abs error {err:.3g}): for KV head g, average over the queries "
        "p = num_sinks + window + 1 .. T-1, the query heads g*G .. g*G+G-1 and the B rows the weight "
        f"weights[b, h, p, j] summed over num_sinks <= j < p - window{suffix}"
    )


# --- the checks --------------------------------------------------------------------------------------------


def _visible_cases(fn: Callable[..., Any]) -> None:
    _check(fn, causal_weights(3, 4, 24, seed=0), 2, 2, 3, "random causal weights, GQA ratio 2")
    layer = model_weights(3, 40, num_heads=4, num_kv_heads=2, seed=5)[1]
    _check(fn, layer, 2, 1, 4, "a tiny model's layer 1, GQA ratio 2")


@graded("distant_attention", *REFERENCES)
def distant_attention_visible(fn: Callable[..., Any]) -> None:
    _visible_cases(fn)
    print("visible tests passed")


def _same_length_in_a_row(fn: Callable[..., Any]) -> None:
    """One T, other sinks and windows in a row: a mask (or anything) cached by T alone is stale."""
    weights = causal_weights(2, 6, 45, seed=11)
    previous = None
    for S, W in ((2, 3), (0, 1), (4, 8), (1, 20), (2, 3)):
        note = (
            f"(called right after num_sinks={previous[0]}, window={previous[1]} with the same T: a mask or "
            "result kept between calls must depend on T, num_sinks and window, or better be rebuilt "
            "every call)"
            if previous
            else ""
        )
        _check(fn, weights, 3, S, W, "random causal weights, GQA ratio 2", note)
        previous = (S, W)


def _edges(fn: Callable[..., Any]) -> None:
    # The shortest T the spec allows: one query (p = num_sinks + window + 1) that loses one key.
    for seed, (B, H, KV, S, W) in enumerate(((3, 4, 2, 0, 1), (2, 4, 4, 3, 2), (2, 8, 2, 4, 16))):
        _check(fn, causal_weights(B, H, S + W + 2, seed=20 + seed), KV, S, W, "T = num_sinks + window + 2")
    _check(fn, causal_weights(3, 4, 30, seed=24), 2, 0, 5, "no sinks")
    _check(fn, causal_weights(2, 4, 30, seed=25), 2, 3, 1, "a window of one key")
    _check(fn, causal_weights(3, 3, 33, seed=26), 3, 2, 4, "H = num_kv_heads (GQA ratio 1)")
    _check(fn, causal_weights(2, 8, 40, seed=27), 2, 2, 5, "GQA ratio 4")
    _check(fn, causal_weights(2, 4, 40, seed=28), 1, 1, 6, "one KV head, GQA ratio 4")
    _check(fn, causal_weights(1, 6, 21, seed=29), 3, 1, 2, "one batch row")
    # Every third query puts all its weight on itself (it loses exactly 0) and still counts in the mean:
    # an average over the queries that lost something is wrong here and nowhere in random weights.
    local = causal_weights(2, 4, 24, seed=30)
    for p in range(0, 24, 3):
        local[:, :, p] = 0.0
        local[:, :, p, p] = 1.0
    _check(fn, local, 2, 2, 3, "every third query attends only to itself (it loses 0)")


def _model_layers(fn: Callable[..., Any]) -> None:
    for heads, kv, B, T, S, W in ((8, 2, 3, 128, 4, 16), (4, 4, 2, 100, 2, 7)):
        for layer, weights in enumerate(model_weights(B, T, heads, kv, seed=30 + heads)):
            _check(fn, weights, kv, S, W, f"a tiny model's layer {layer}, GQA ratio {heads // kv}")


def _dtypes(fn: Callable[..., Any]) -> None:
    """Long rows in float16, bfloat16 and float64: a float32 result, accurate to 1e-5 of the largest score."""
    for B, H, KV in ((2, 4, 2), (1, 1, 1)):
        weights = causal_weights(B, H, 512, seed=40 + H, dtype=torch.float64)
        for dtype in (torch.float16, torch.bfloat16, torch.float64):
            _check(fn, weights.to(dtype), KV, 4, 16, "random causal weights, T=512")
    layer = model_weights(2, 256, num_heads=8, num_kv_heads=4, seed=41)[0]
    _check(fn, layer.half(), 4, 4, 16, "a tiny model's layer 0 in float16, GQA ratio 2")


def _no_aliasing(fn: Callable[..., Any]) -> None:
    first = _check(fn, causal_weights(2, 4, 33, seed=50), 2, 2, 3, "random causal weights")
    copy = snapshot(first)
    _check(fn, causal_weights(2, 4, 33, seed=51), 2, 2, 3, "random causal weights")
    assert_unchanged(
        first, copy, "the score returned by an earlier call",
        "return a new tensor on every call, not a buffer that the next call overwrites",
    )  # fmt: skip


def _sweep(fn: Callable[..., Any]) -> None:
    rng = random.Random(5)
    for case in range(20):
        S, W = rng.randint(0, 6), rng.randint(1, 12)
        G, KV, B = rng.choice((1, 2, 4)), rng.randint(1, 3), rng.randint(1, 3)
        T = rng.choice(
            [t for t in PAST_VISIBLE_LENGTHS[:3] if t > S + W + 1] + [S + W + 2 + rng.randint(0, 9)]
        )
        dtype = rng.choice((torch.float32, torch.float32, torch.float16, torch.bfloat16))
        _check(fn, causal_weights(B, G * KV, T, seed=100 + case, dtype=dtype), KV, S, W, "random sweep")


@graded("distant_attention", *REFERENCES)
def distant_attention_hidden(fn: Callable[..., Any]) -> None:
    _visible_cases(fn)
    _same_length_in_a_row(fn)
    _edges(fn)
    _model_layers(fn)
    _dtypes(fn)
    _no_aliasing(fn)
    _sweep(fn)
    print("hidden tests passed")
