"""Evicting KV caches on the shipped model: perplexity along a stream past the context, against KV bytes.

Chapter 05's tables (issue 16), on ``shakespeare-gqa`` (6 layers, 2 KV heads, head_dim 32, fp32, trained
context 512) and streams cut from the validation plays (:func:`eval_streams`). Four policies
(:data:`POLICIES`), each at a budget of ``b`` tokens per layer, batch row and KV head:

- ``dense``: :class:`~kvlib.cache.dense.NaiveKVCache`, every token (no budget): the reference. Past the
  context it runs with ``model.allow_long_context = True`` at positions it was never trained on;
- ``window``: :class:`~kvlib.cache.evict.SlidingWindowKVCache`, the last ``b`` tokens;
- ``sinks``: :class:`~kvlib.cache.evict.SinkKVCache`, the first ``--num-sinks`` (4) tokens and the last
  ``b - 4``, keys re-numbered inside the cache (StreamingLLM);
- ``h2o``: :class:`~kvlib.cache.evict.H2OKVCache`, the ``b // 2`` heaviest hitters and the last
  ``b - b // 2`` tokens (H2O's half-and-half split, no reserved sinks: if the model parks attention on the
  first tokens, they become heavy hitters on their own). Its ``nbytes()`` also counts the score (float32)
  and position (int64) it keeps per token and head: 144 bytes per token on top of 3,072 of keys and values.

Sections (``--sections``, all by default):

- ``position``: per-token NLL along ``--streams`` streams of ``--stream-len`` tokens (default 4 x 2048,
  4x the context) read through each cache at ``--budget`` (256), perplexity per bucket of ``--bucket``
  target positions (a bucket is the positions of the *predicted* tokens: 1-255, 256-511, ...);
- ``budgets``: perplexity against KV bytes for ``--budgets`` (32..512: 1/16 to 1 of the context) on
  ``--budget-streams`` streams of ``--budget-len`` tokens (512) read with ``--budget-chunk`` (1). Streams
  *within* the context, on purpose: the dense cache is then the uncompressed model at trained positions,
  the 1/1 budget equals it exactly, and every gap below it is what eviction dropped, not RoPE
  extrapolation (the position table shows that part: dense degrades past 512 on its own). Perplexity is
  given over all targets and over the second half (targets 256..511, where every budget below 1/2 binds).
  Bytes are each cache's ``nbytes()`` per stream row after the stream, with the fraction of dense's;
- ``memory``: ``nbytes()`` of one stream row's cache after ``--memory-at`` tokens (128 .. 2048): flat for
  the evicting caches (a window's ring is allocated at full size with its first token, a sink cache's once
  the sinks are full; H2O grows to its budget, then stays), linear for dense;
- ``sinks``: :func:`attention_to_first`, the attention mass queries put on the first ``--first`` tokens,
  per layer, beside the share a uniform attention would give them (does our model have attention sinks?);
- ``chunking``: what ``--chunk`` costs in accuracy and saves in time against one token per call, side by
  side in one run, on ``--chunk-check-len`` tokens of 2 streams at ``--budget``;
- ``heads``: head pruning with :mod:`kvlib.cache.heads` (DuoAttention's split): importance-ranked plans
  (gradient, variance and distant-attention scores computed on the *training* split) against random plans
  against all-full, perplexity and KV bytes on the budget section's streams. A plan with every head full
  must give dense's perplexity and bytes must be ``pruned_kv_fraction`` of dense's: otherwise the run
  prints MISMATCH and exits 1.

Chunking (:func:`kvlib.data.stream_nll`): a call of C tokens attends over what the cache kept before it
plus the call's own tokens, so a query sees up to C - 1 tokens beyond the budget, and H2O scores and evicts
once per call. Measured with one thread on this 2-core CPU: 4 streams x 2048 tokens took 33-64 s per policy
at chunk 1 (other jobs running) against 3.5-6 s at chunk 16; the chunking table (2 x 768 tokens, budget 256)
gave chunk 16 at 0.09-0.13x the time of chunk 1 and perplexity within 0.04%. So the position table uses
chunk 16. At budget 32 chunking is not harmless: chunk 16 moved the window's perplexity from 39.57 to 39.44
(4 x 512 tokens), more than the gaps between policies, so the budget and head tables decode one token per
call (130 s of the whole default run's 172 s, measured on a quiet machine; longer under load).

Found with the defaults: this model has no attention sinks
(every layer puts *less* than a uniform share on the first 4 tokens), so sinks + window and a plain window
agree within 0.1%; dense degrades past the context (RoPE positions never trained on), and so does H2O, whose
keys stay at absolute positions: after 2048 tokens about half of the tokens it keeps are more than 512
positions behind the query, distances the model never saw.

Example: ``python -m kvlib.bench eviction --sections position,memory --stream-len 4096``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from kvlib.validate import int_list_arg, nonnegative_int_arg, positive_int_arg, require_int, require_tensor

__all__ = [
    "POLICIES",
    "SECTIONS",
    "AttentionToFirst",
    "Policy",
    "attention_to_first",
    "eval_streams",
    "measure_budgets",
    "measure_chunking",
    "head_pruning_mismatches",
    "measure_head_pruning",
    "measure_memory",
    "measure_position",
    "uniform_share",
]

SECTIONS: tuple[str, ...] = ("position", "budgets", "memory", "sinks", "chunking", "heads")


# --- policies -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """One cache policy at a token budget: ``make(num_layers, budget, num_sinks)`` builds a fresh cache,
    ``keeps(budget, num_sinks)`` says in words which tokens it keeps."""

    name: str
    make: Callable[[int, int, int], Any]
    keeps: Callable[[int, int], str]


def _dense(num_layers: int, budget: int, num_sinks: int) -> Any:
    from kvlib.cache.dense import NaiveKVCache

    return NaiveKVCache(num_layers)


def _window(num_layers: int, budget: int, num_sinks: int) -> Any:
    from kvlib.cache.evict import SlidingWindowKVCache

    return SlidingWindowKVCache(num_layers, budget)


def _sinks(num_layers: int, budget: int, num_sinks: int) -> Any:
    from kvlib.cache.evict import SinkKVCache

    return SinkKVCache(num_layers, num_sinks, budget - num_sinks)


def _h2o(num_layers: int, budget: int, num_sinks: int) -> Any:
    from kvlib.cache.evict import H2OKVCache

    return H2OKVCache(num_layers, heavy=budget // 2, recent=budget - budget // 2)


POLICIES: tuple[Policy, ...] = (
    Policy("dense", _dense, lambda b, s: "every token (no budget)"),
    Policy("window", _window, lambda b, s: f"the last {b}"),
    Policy("sinks", _sinks, lambda b, s: f"the first {s} + the last {b - s} (re-numbered)"),
    Policy("h2o", _h2o, lambda b, s: f"{b // 2} heaviest hitters + the last {b - b // 2}"),
)
_BY_NAME = {p.name: p for p in POLICIES}


def _num_layers(model: Any) -> int:
    return model.config.num_layers


def _kv_bytes_per_token(model: Any) -> int:
    """Keys and values of one token of one stream row: 2 x layers x KV heads x head_dim x dtype size."""
    cfg, param = model.config, next(model.parameters())
    return 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * param.element_size()


@contextlib.contextmanager
def _long_context(model: Any) -> Iterator[None]:
    """``model.allow_long_context = True`` inside the block (dense and window run past the context at
    absolute positions), the caller's setting restored after it."""
    before = model.allow_long_context
    model.allow_long_context = True
    try:
        yield
    finally:
        model.allow_long_context = before


def _check_budget(budget: int, num_sinks: int) -> None:
    require_int("budget", budget, minimum=2)
    require_int("num_sinks", num_sinks, minimum=0)
    if num_sinks >= budget:
        raise ValueError(
            f"num_sinks ({num_sinks}) must be below the budget ({budget}): the sink cache keeps "
            "num_sinks first tokens plus a window of budget - num_sinks >= 1"
        )


# --- data ---------------------------------------------------------------------------------------------------


def eval_streams(length: int, rows: int, split: str = "val") -> torch.Tensor:
    """``rows`` streams of ``length`` consecutive tokens of ``split``: [rows, length] (torch.long).

    Row k starts at ``round(k * (N - length) / (rows - 1))`` of the split's N tokens (row 0 at the first
    token, the last row ending at the split's end), so rows are spread over the plays and deterministic.
    """
    from kvlib.data import token_ids

    length = require_int("length", length, minimum=2)
    rows = require_int("rows", rows, minimum=1)
    ids = token_ids(split)
    if length * rows > len(ids):
        raise ValueError(
            f"{rows} streams of {length} tokens need {length * rows} tokens; split {split!r} has {len(ids)}"
        )
    starts = torch.linspace(0, len(ids) - length, rows).round().long().tolist() if rows > 1 else [0]
    return torch.stack([ids[s : s + length] for s in starts])  # (rows, length)


# --- attention on the first tokens ------------------------------------------------------------------------


class AttentionToFirst:
    """A dense cache that adds up, per layer, the attention mass queries put on the stream's first tokens.

    ``update`` stores everything (as :class:`~kvlib.cache.dense.NaiveKVCache`); ``observe_attention``
    receives the softmax weights [B, H, T_new, n] the seam computed anyway, and for every query at a
    stream position ``>= first`` adds ``sum(weights[..., :first])`` (over the first ``first`` keys) to
    the layer's total. ``mean()`` is the mean over batch rows, query heads and such queries: [num_layers].
    Queries at positions ``< first`` are left out: they can only see first tokens, so their mass is 1.
    """

    def __init__(self, num_layers: int, first: int) -> None:
        from kvlib.cache.dense import NaiveKVCache

        self.num_layers = require_int("num_layers", num_layers, minimum=1)
        self.first = require_int("first", first, minimum=1)
        self.store = NaiveKVCache(self.num_layers)
        self.total = torch.zeros(self.num_layers, dtype=torch.float64)
        self.count = torch.zeros(self.num_layers, dtype=torch.long)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.store.update(layer, k, v)

    def observe_attention(self, layer: int, weights: torch.Tensor) -> None:
        _, _, T, n = weights.shape  # (B, H, T_new, n): the queries are the last T of the n keys
        rows = torch.arange(n - T, n, device=weights.device) >= self.first  # (T,) queries past `first`
        mass = weights[:, :, rows, : self.first].double().sum(-1)  # (B, H, rows)
        self.total[layer] += mass.sum().cpu()
        self.count[layer] += mass.numel()

    @property
    def seq_len(self) -> int:
        return self.store.seq_len

    def reset(self) -> None:
        self.store.reset()
        self.total.zero_()
        self.count.zero_()

    def mean(self) -> torch.Tensor:
        """Mean attention mass on the first ``first`` tokens per layer: [num_layers] float32."""
        if int(self.count.min()) == 0:
            raise RuntimeError(f"no query past position {self.first} was observed in some layer")
        return (self.total / self.count).float()


def attention_to_first(model: Any, tokens: torch.Tensor, first: int = 4) -> torch.Tensor:
    """Mean attention mass on the first ``first`` tokens, per layer: [num_layers] float32.

    ``tokens`` [B, T] (T > first) goes through ``model`` in one call with an :class:`AttentionToFirst`
    cache, under ``torch.no_grad()`` and in eval mode (restored after). For layer l the result is the
    mean, over batch rows, query heads and the queries at positions ``first .. T-1``, of the softmax
    weight that query gives to keys ``0 .. first-1`` together. Compare it with :func:`uniform_share`, what
    attention spread evenly over the visible keys would give: a layer far above it parks attention on the
    first tokens ("attention sinks", Xiao et al. 2023). Positions past the context need
    ``model.allow_long_context = True``, as for any forward.
    """
    from kvlib.data import _eval_mode

    first = require_int("first", first, minimum=1)
    require_tensor("tokens", tokens, 2, "[B, T] of token ids (torch.long)")
    if tokens.shape[1] <= first or tokens.shape[0] < 1:
        raise ValueError(
            f"tokens must be [B >= 1, T > first={first}] (some query must lie past the first "
            f"tokens), got shape {list(tokens.shape)}"
        )
    device = next(model.parameters()).device
    recorder = AttentionToFirst(_num_layers(model), first)
    with _eval_mode(model), torch.no_grad():
        model(tokens.to(device), positions=torch.arange(tokens.shape[1], device=device), cache=recorder)
    return recorder.mean()


def uniform_share(first: int, length: int) -> float:
    """What :func:`attention_to_first` gives for attention spread evenly over the visible keys: the mean
    of ``first / (p + 1)`` over query positions ``p = first .. length-1``."""
    first = require_int("first", first, minimum=1)
    length = require_int("length", length, minimum=first + 1)
    return sum(first / (p + 1) for p in range(first, length)) / (length - first)


# --- measurements -------------------------------------------------------------------------------------------


def _stream(model: Any, tokens: torch.Tensor, cache: Any, chunk: int) -> tuple[torch.Tensor, float]:
    from kvlib.data import stream_nll

    start = time.perf_counter()
    nll = stream_nll(model, tokens, cache, chunk=chunk)
    return nll, time.perf_counter() - start


def _policies(names: list[str] | None) -> list[Policy]:
    if names is None:
        return list(POLICIES)
    unknown = [n for n in names if n not in _BY_NAME]
    if unknown:
        raise ValueError(f"unknown policy {unknown}; known: {', '.join(_BY_NAME)}")
    return [p for p in POLICIES if p.name in names]


def _ppl(nll: torch.Tensor) -> float:
    return math.exp(nll.double().mean().item()) if nll.numel() else float("nan")


def measure_position(
    model: Any,
    tokens: torch.Tensor,
    *,
    budget: int = 256,
    num_sinks: int = 4,
    chunk: int = 16,
    bucket: int = 256,
    policies: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Perplexity against position along ``tokens`` [B, N] for every policy at ``budget``.

    Each row: ``name``, ``keeps``, ``ppl`` (all N-1 targets), ``buckets`` (list of ``(first, last,
    ppl)``: targets whose predicted token sits at positions ``first..last``, in steps of ``bucket``
    starting at 0; the first bucket starts at 1, as position 0 is never predicted), ``bytes`` (cache
    ``nbytes()`` per stream row after the stream) and ``seconds``. Runs with ``allow_long_context``.
    """
    _check_budget(budget, num_sinks)
    bucket = require_int("bucket", bucket, minimum=1)
    rows = []
    with _long_context(model):
        for policy in _policies(policies):
            cache = policy.make(_num_layers(model), budget, num_sinks)
            nll, seconds = _stream(model, tokens, cache, chunk)  # (B, N-1): column i predicts token i+1
            N = tokens.shape[1]
            buckets = []
            for lo in range(0, N, bucket):
                hi = min(lo + bucket, N) - 1  # predicted positions lo..hi, i.e. columns lo-1..hi-1
                buckets.append((max(lo, 1), hi, _ppl(nll[:, max(lo, 1) - 1 : hi])))
            rows.append(
                {
                    "name": policy.name,
                    "keeps": policy.keeps(budget, num_sinks),
                    "ppl": _ppl(nll),
                    "buckets": buckets,
                    "bytes": cache.nbytes() / tokens.shape[0],
                    "seconds": seconds,
                }
            )
    return rows


def measure_budgets(
    model: Any,
    tokens: torch.Tensor,
    budgets: list[int],
    *,
    num_sinks: int = 4,
    chunk: int = 1,
    late_from: int | None = None,
    policies: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Perplexity against KV bytes: every evicting policy at every budget, and dense once.

    Each row: ``name``, ``budget`` (None for dense), ``keeps``, ``bytes`` (``nbytes()`` per stream row
    after the stream), ``bytes_vs_dense``, ``ppl`` (all targets), ``ppl_late`` (targets predicting
    positions ``late_from .. N-1``, default N // 2), ``ppl_vs_dense`` and ``seconds``.
    """
    N = tokens.shape[1]
    late_from = N // 2 if late_from is None else require_int("late_from", late_from, minimum=1, maximum=N - 1)
    names = [p.name for p in _policies(policies)]
    runs = [("dense", None)] + [(n, b) for n in names if n != "dense" for b in budgets]
    rows = []
    with _long_context(model):
        for name, budget in runs:
            if budget is not None:
                _check_budget(budget, num_sinks)
            policy = _BY_NAME[name]
            cache = policy.make(_num_layers(model), budget or N, num_sinks)
            nll, seconds = _stream(model, tokens, cache, chunk)
            rows.append(
                {
                    "name": name,
                    "budget": budget,
                    "keeps": policy.keeps(budget or N, num_sinks),
                    "bytes": cache.nbytes() / tokens.shape[0],
                    "ppl": _ppl(nll),
                    "ppl_late": _ppl(nll[:, late_from - 1 :]),
                    "seconds": seconds,
                }
            )
    dense = rows[0]
    for row in rows:
        row["bytes_vs_dense"] = row["bytes"] / dense["bytes"]
        row["ppl_vs_dense"] = row["ppl"] / dense["ppl"]
    return rows


@torch.no_grad()
def measure_memory(
    model: Any,
    tokens: torch.Tensor,
    checkpoints: list[int],
    *,
    budget: int = 256,
    num_sinks: int = 4,
    chunk: int = 16,
    policies: list[str] | None = None,
) -> list[dict[str, Any]]:
    """``nbytes()`` of each policy's cache as ``tokens`` [1, N] streams through it.

    Tokens go in calls of ``chunk`` (split at every checkpoint); after the call that brings the cache to
    a checkpoint's length its ``nbytes()`` is recorded. Each row: ``name``, ``keeps``, ``bytes``
    (``{tokens seen: bytes}``).
    """
    from kvlib.data import _eval_mode

    _check_budget(budget, num_sinks)
    require_tensor("tokens", tokens, 2, "[1, N]")
    N = tokens.shape[1]
    if not checkpoints or min(checkpoints) < 1 or max(checkpoints) > N:
        raise ValueError(f"checkpoints must lie in [1, {N}] (the stream's length), got {checkpoints}")
    bounds = sorted(set(range(0, N, chunk)) | set(checkpoints) | {N})
    device = next(model.parameters()).device
    ids = tokens.to(device)
    rows = []
    with _long_context(model), _eval_mode(model):
        for policy in _policies(policies):
            cache = policy.make(_num_layers(model), budget, num_sinks)
            seen: dict[int, int] = {}
            for start, end in zip(bounds[:-1], bounds[1:]):
                model(ids[:, start:end], positions=torch.arange(start, end, device=device), cache=cache)
                if end in checkpoints:
                    seen[end] = cache.nbytes()
            rows.append({"name": policy.name, "keeps": policy.keeps(budget, num_sinks), "bytes": seen})
    return rows


def measure_chunking(
    model: Any,
    tokens: torch.Tensor,
    chunks: list[int],
    *,
    budget: int = 256,
    num_sinks: int = 4,
    policies: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Perplexity and seconds of every policy at every chunk size, side by side (same tokens, one run).

    Each row: ``name``, ``chunk``, ``ppl``, ``seconds``, ``ppl_vs_first`` and ``time_vs_first`` (ratios
    against the same policy at ``chunks[0]``).
    """
    _check_budget(budget, num_sinks)
    rows = []
    with _long_context(model):
        for policy in _policies(policies):
            first = None
            for chunk in chunks:
                cache = policy.make(_num_layers(model), budget, num_sinks)
                nll, seconds = _stream(model, tokens, cache, chunk)
                row = {"name": policy.name, "chunk": chunk, "ppl": _ppl(nll), "seconds": seconds}
                first = first or row
                row["ppl_vs_first"] = row["ppl"] / first["ppl"]
                row["time_vs_first"] = row["seconds"] / first["seconds"]
                rows.append(row)
    return rows


def measure_head_pruning(
    model: Any,
    tokens: torch.Tensor,
    calibration: torch.Tensor,
    num_full: list[int],
    *,
    num_sinks: int = 4,
    window: int = 16,
    seeds: int = 3,
    chunk: int = 1,
) -> list[dict[str, Any]]:
    """Head pruning: perplexity and KV bytes of :class:`~kvlib.cache.heads.HeadSplitKVCache` plans.

    Importance scores (every method of :data:`kvlib.cache.heads.IMPORTANCE_METHODS`: ``"gradient"``,
    ``"variance"``, ``"distant_attention"`` with the cache's own ``num_sinks`` and ``window``) come from
    ``calibration`` [B', T'] (training tokens: scoring on the evaluation streams would leak); for every
    count in ``num_full`` the top-ranked heads keep every token and the others keep ``num_sinks`` first
    + ``window`` last tokens. The control is ``seeds`` random plans with the same count. Each row:
    ``plan`` (a method, "random", or "dense" first: a plain dense cache), ``num_full``, ``ppl`` (random:
    mean over seeds, with ``ppl_min``/``ppl_max``), ``bytes`` (``nbytes()`` per stream row after the
    stream), ``fraction`` (:func:`~kvlib.cache.heads.pruned_kv_fraction` at the stream's length),
    ``bytes_vs_dense``, ``ppl_vs_dense`` and ``full_heads`` (the plan as ``layer.head`` strings; random:
    seed 0's). A plan that is the same for several rows (none or all heads full) runs once.
    """
    from kvlib.cache.dense import NaiveKVCache
    from kvlib.cache.heads import (
        IMPORTANCE_METHODS,
        HeadSplitKVCache,
        head_importance,
        plan_from_scores,
        pruned_kv_fraction,
        random_plan,
    )

    cfg = model.config
    L, KV, N = cfg.num_layers, cfg.num_kv_heads, tokens.shape[1]
    dense_cache = NaiveKVCache(L)
    dense_nll, _ = _stream(model, tokens, dense_cache, chunk)
    dense_ppl, dense_bytes = _ppl(dense_nll), dense_cache.nbytes() / tokens.shape[0]
    scores = {
        m: head_importance(model, calibration, method=m, num_sinks=num_sinks, window=window)
        for m in IMPORTANCE_METHODS
    }

    done: dict[tuple[bool, ...], tuple[float, float]] = {}  # plans repeat (none or all full): run once

    def run(plan: torch.Tensor) -> tuple[float, float]:
        key = tuple(plan.flatten().tolist())
        if key not in done:
            cache = HeadSplitKVCache(L, plan, num_sinks, window)
            nll, _ = _stream(model, tokens, cache, chunk)
            done[key] = (_ppl(nll), cache.nbytes() / tokens.shape[0])
        return done[key]

    def heads(plan: torch.Tensor) -> list[str]:
        return [f"{int(layer)}.{int(h)}" for layer, h in plan.nonzero().tolist()]

    rows = []
    for n in num_full:
        n = require_int("num_full", n, minimum=0, maximum=L * KV)
        for method, score in scores.items():
            plan = plan_from_scores(score, n)
            ppl, nbytes = run(plan)
            rows.append(
                {
                    "plan": method,
                    "num_full": n,
                    "ppl": ppl,
                    "bytes": nbytes,
                    "full_heads": heads(plan),
                    "fraction": pruned_kv_fraction(plan, N, num_sinks, window),
                }
            )
        results = []
        for seed in range(seeds):
            plan = random_plan(L, KV, n, seed)
            results.append((*run(plan), plan))
        ppls = [r[0] for r in results]
        rows.append(
            {
                "plan": "random",
                "num_full": n,
                "ppl": sum(ppls) / len(ppls),
                "ppl_min": min(ppls),
                "ppl_max": max(ppls),
                "bytes": results[0][1],
                "full_heads": heads(results[0][2]),
                "fraction": pruned_kv_fraction(results[0][2], N, num_sinks, window),
            }
        )
    for row in rows:
        row["bytes_vs_dense"] = row["bytes"] / dense_bytes
        row["ppl_vs_dense"] = row["ppl"] / dense_ppl
    return [
        {
            "plan": "dense",
            "num_full": L * KV,
            "ppl": dense_ppl,
            "bytes": dense_bytes,
            "fraction": 1.0,
            "bytes_vs_dense": 1.0,
            "ppl_vs_dense": 1.0,
            "full_heads": ["all"],
        },
        *rows,
    ]


def head_pruning_mismatches(rows: list[dict[str, Any]], tolerance: float = 1e-4) -> list[str]:
    """What is wrong with rows of :func:`measure_head_pruning`: a plan with every head full whose
    perplexity is not the dense cache's (within ``tolerance``, relative), or bytes that are not
    ``pruned_kv_fraction`` of dense's. Empty when the table is consistent."""
    dense, total = rows[0], rows[0]["num_full"]
    problems = []
    for r in rows[1:]:
        if r["num_full"] == total and abs(r["ppl"] / dense["ppl"] - 1) > tolerance:
            problems.append(
                f"{r['plan']} with all {total} heads full: ppl {r['ppl']:.4f}, dense {dense['ppl']:.4f}"
            )
        if abs(r["bytes_vs_dense"] - r["fraction"]) > 1e-9:
            problems.append(f"{r['plan']} {r['num_full']}: bytes {r['bytes_vs_dense']:.6f} of dense, "
                            f"pruned_kv_fraction {r['fraction']:.6f}")  # fmt: skip
    return problems


# --- printed tables -----------------------------------------------------------------------------------------


def format_policies(model: Any, budget: int, num_sinks: int) -> str:
    """What each policy keeps at ``budget``, and that budget in tokens and bytes (per stream row)."""
    per_token = _kv_bytes_per_token(model)
    lines = [f"{'policy':8s} {'keeps (per layer, row, KV head)':48s} {'tokens':>7s} {'KV bytes/row':>13s}"]
    for p in POLICIES:
        tokens = "all" if p.name == "dense" else str(budget)
        nbytes = "grows" if p.name == "dense" else f"{budget * per_token:,}"
        lines.append(f"{p.name:8s} {p.keeps(budget, num_sinks):48s} {tokens:>7s} {nbytes:>13s}")
    lines.append(
        f"(keys and values: {per_token:,} bytes per token per stream row; h2o adds 144 bytes of "
        "scores and positions per token)"
    )
    return "\n".join(lines)


def format_position(rows: list[dict[str, Any]]) -> str:
    spans = [f"{lo}-{hi}" for lo, hi, _ in rows[0]["buckets"]]
    header = (
        f"{'policy':8s} " + " ".join(f"{s:>9s}" for s in spans) + f" {'all':>8s} {'bytes/row':>11s} {'s':>6s}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        cells = " ".join(f"{ppl:9.3f}" for _, _, ppl in r["buckets"])
        lines.append(f"{r['name']:8s} {cells} {r['ppl']:8.3f} {r['bytes']:11,.0f} {r['seconds']:6.1f}")
    return "\n".join(lines)


def format_budgets(rows: list[dict[str, Any]], length: int) -> str:
    """The budget table; 'of len': the budget as a fraction of the stream's ``length`` (what dense keeps)."""
    header = (
        f"{'policy':8s} {'budget':>6s} {'of len':>7s} {'bytes/row':>11s} {'vs dense':>8s} {'ppl':>8s} "
        f"{'vs dense':>8s} {'ppl late':>8s} {'s':>6s}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        budget = "all" if r["budget"] is None else str(r["budget"])
        frac = "1" if r["budget"] is None else _fraction(r["budget"], length)
        lines.append(
            f"{r['name']:8s} {budget:>6s} {frac:>7s} {r['bytes']:11,.0f} {r['bytes_vs_dense']:8.4f} "
            f"{r['ppl']:8.3f} {r['ppl_vs_dense']:8.4f} {r['ppl_late']:8.3f} {r['seconds']:6.1f}"
        )
    return "\n".join(lines)


def _fraction(budget: int, length: int) -> str:
    if length % budget == 0:
        return f"1/{length // budget}" if budget < length else "1"
    return f"{budget / length:.3g}"


def format_memory(rows: list[dict[str, Any]]) -> str:
    points = sorted(rows[0]["bytes"])
    header = f"{'tokens:':8s} " + " ".join(f"{n:>11d}" for n in points)
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r['name']:8s} " + " ".join(f"{r['bytes'][n]:11,d}" for n in points))
    return "\n".join(lines)


def format_sinks(mass: torch.Tensor, first: int, length: int) -> str:
    uniform = uniform_share(first, length)
    lines = [f"{'layer':>5s} {'mass on first ' + str(first):>16s} {'uniform':>8s} {'ratio':>7s}"]
    for layer, m in enumerate(mass.tolist()):
        lines.append(f"{layer:5d} {m:16.4f} {uniform:8.4f} {m / uniform:7.2f}")
    return "\n".join(lines)


def format_chunking(rows: list[dict[str, Any]]) -> str:
    header = f"{'policy':8s} {'chunk':>5s} {'ppl':>9s} {'vs first':>9s} {'s':>7s} {'time vs first':>13s}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['name']:8s} {r['chunk']:5d} {r['ppl']:9.4f} {r['ppl_vs_first']:9.5f} "
            f"{r['seconds']:7.2f} {r['time_vs_first']:12.3f}x"
        )
    return "\n".join(lines)


def format_heads(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'plan':17s} {'full':>4s} {'bytes/row':>11s} {'vs dense':>8s} {'formula':>8s} {'ppl':>8s} "
        f"{'vs dense':>8s} {'random range':>17s}  full heads (layer.head)"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        spread = f"{r['ppl_min']:.3f}-{r['ppl_max']:.3f}" if "ppl_min" in r else ""
        lines.append(
            f"{r['plan']:17s} {r['num_full']:4d} {r['bytes']:11,.0f} {r['bytes_vs_dense']:8.4f} "
            f"{r['fraction']:8.4f} {r['ppl']:8.3f} {r['ppl_vs_dense']:8.4f} {spread:>17s}  "
            + " ".join(r["full_heads"])
        )
    return "\n".join(lines)


# --- command line ------------------------------------------------------------------------------------------

DEFAULTS: dict[str, Any] = dict(
    stream_len=2048,
    streams=4,
    budget=256,
    chunk=16,
    bucket=256,
    budgets=[32, 64, 128, 256, 512],
    budget_len=512,
    budget_streams=4,
    budget_chunk=1,
    memory_at=[128, 256, 512, 1024, 2048],
    first=4,
    sink_len=512,
    chunk_check_len=768,
    num_full=[0, 3, 6, 9, 12],
    head_window=16,
    seeds=3,
    calibration_len=256,
    calibration_rows=4,
)
QUICK: dict[str, Any] = dict(
    stream_len=96,
    streams=2,
    budget=24,
    chunk=8,
    bucket=32,
    budgets=[8, 16, 32],
    budget_len=32,
    budget_streams=2,
    budget_chunk=1,
    memory_at=[16, 32, 64, 96],
    first=4,
    sink_len=32,
    chunk_check_len=40,
    num_full=[0, 6, 12],
    head_window=4,
    seeds=2,
    calibration_len=32,
    calibration_rows=2,
)


def _counts(text: str) -> list[int]:
    """argparse type: comma-separated integers >= 0, e.g. ``0,3,6``."""
    try:
        counts = [int(item) for item in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 0:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 0 like 0,3,6, got {text!r}")
    return counts


_pos, _ints = positive_int_arg, int_list_arg
#: the size options: unset ones come from QUICK (--quick) or DEFAULTS
_SIZE_OPTIONS: tuple[tuple[str, Callable[[str], Any], str], ...] = (
    ("--stream-len", _pos, "position/memory: tokens per stream (default 2048, 4x the context)"),
    ("--streams", _pos, "position: streams (batch rows, spread over the validation plays; default 4)"),
    ("--budget", _pos, "position/memory/chunking: tokens each evicting cache keeps (default 256)"),
    ("--chunk", _pos, "position/memory: tokens per model call (default 16; see the module docstring)"),
    ("--bucket", _pos, "position: positions per perplexity bucket (default 256)"),
    ("--budgets", _ints, "budgets: budgets in tokens (default 32,64,128,256,512)"),
    ("--budget-len", _pos, "budgets/heads: tokens per stream (default 512, the context)"),
    ("--budget-streams", _pos, "budgets/heads: streams (default 4)"),
    ("--budget-chunk", _pos, "budgets/heads: tokens per model call (default 1)"),
    ("--memory-at", _ints, "memory: stream lengths to measure at (default 128,256,512,1024,2048)"),
    ("--first", _pos, "sinks: how many first tokens (default 4)"),
    ("--sink-len", _pos, "sinks: tokens per stream, one call (default 512)"),
    ("--chunk-check-len", _pos, "chunking: tokens per stream, 2 streams (default 768)"),
    ("--num-full", _counts, "heads: how many KV heads keep every token (default 0,3,6,9,12)"),
    ("--head-window", _pos, "heads: window of the other heads, after the sinks (default 16)"),
    ("--seeds", _pos, "heads: random plans per count (default 3)"),
    ("--calibration-len", _pos, "heads: tokens per training-split stream for the scores (default 256)"),
    ("--calibration-rows", _pos, "heads: training-split streams for the scores (default 4)"),
)


def _sections_arg(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    unknown = [n for n in names if n not in SECTIONS]
    if not text.strip() or unknown:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated sections from {', '.join(SECTIONS)}, got {text!r}"
        )
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from kvlib.model import MODEL_NAMES

    parser.add_argument("--model", default="shakespeare-gqa", choices=MODEL_NAMES, help="shipped checkpoint")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds; for tests), see QUICK")
    parser.add_argument(
        "--sections",
        type=_sections_arg,
        default=list(SECTIONS),
        help=f"comma-separated, default all: {','.join(SECTIONS)}",
    )
    for flag, kind, text in _SIZE_OPTIONS:
        parser.add_argument(flag, type=kind, default=None, help=text)
    parser.add_argument("--num-sinks", type=nonnegative_int_arg, default=4, help="sinks kept (default 4)")
    parser.add_argument(
        "--threads",
        type=nonnegative_int_arg,
        default=1,
        help="torch threads (0: torch's default); 1 by default, as in the quantization bench",
    )


def _resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Fill every size option left unset from :data:`QUICK` (``--quick``) or :data:`DEFAULTS`."""
    base = QUICK if args.quick else DEFAULTS
    for flag, _, _ in _SIZE_OPTIONS:
        name = flag[2:].replace("-", "_")
        if getattr(args, name, None) is None:
            setattr(args, name, base[name])
    return args


def _num_kv_heads_total(name: str) -> int:
    """num_layers x num_kv_heads of a shipped model, read from its config without loading the weights."""
    import json

    from kvlib.model import ModelConfig, checkpoint_path

    cfg = ModelConfig.from_hf_config(json.loads((checkpoint_path(name) / "config.json").read_text()))
    return cfg.num_layers * cfg.num_kv_heads


def validate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    from kvlib.bench.cache_speed import _context_length

    args = _resolve(args)
    context = _context_length(args.model)
    for budget in [args.budget, *args.budgets]:
        if budget <= args.num_sinks:
            parser.error(
                f"argument --budget/--budgets: every budget must exceed --num-sinks ({args.num_sinks}), "
                f"got {budget}"
            )
    if args.budget_len > context:
        parser.error(
            f"argument --budget-len: must be <= model {args.model}'s context ({context}): the budget "
            f"table compares against dense at trained positions, got {args.budget_len}"
        )
    if args.calibration_len <= args.num_sinks + args.head_window + 1:
        parser.error(
            f"argument --calibration-len: must exceed --num-sinks + --head-window + 1 = "
            f"{args.num_sinks + args.head_window + 1} (the distant-attention score needs queries past the "
            f"window), got {args.calibration_len}"
        )
    if args.calibration_len > context:
        parser.error(
            f"argument --calibration-len: must be <= the context ({context}), got {args.calibration_len}"
        )
    if args.sink_len > context or args.sink_len <= args.first:
        parser.error(
            f"argument --sink-len: must lie in ({args.first}, {context}] (past --first, within the "
            f"context), got {args.sink_len}"
        )
    for flag, n in (
        ("--stream-len", args.stream_len),
        ("--budget-len", args.budget_len),
        ("--chunk-check-len", args.chunk_check_len),
    ):
        if n < 2:
            parser.error(f"argument {flag}: a stream needs at least 2 tokens, got {n}")
    if max(args.memory_at) > args.stream_len:
        parser.error(
            f"argument --memory-at: every length must be <= --stream-len ({args.stream_len}), "
            f"got {max(args.memory_at)}"
        )
    heads = _num_kv_heads_total(args.model)
    if max(args.num_full) > heads:
        parser.error(
            f"argument --num-full: model {args.model} has {heads} KV heads, got {max(args.num_full)}"
        )


def main(args: argparse.Namespace) -> int:
    from kvlib.model import load_model

    args = _resolve(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model)
    cfg = model.config
    ctx, S = cfg.max_seq_len, args.num_sinks
    print(
        f"model {args.model} ({cfg.num_layers} layers, {cfg.num_heads} heads / {cfg.num_kv_heads} KV heads, "
        f"head_dim {cfg.head_dim}, context {ctx}), validation plays; torch threads {torch.get_num_threads()}"
        f"{'; --quick sizes' if args.quick else ''}\n"
    )
    print(format_policies(model, args.budget, S))
    start = time.perf_counter()
    sections = args.sections
    if "position" in sections:
        tokens = eval_streams(args.stream_len, args.streams)
        t0 = time.perf_counter()
        rows = measure_position(
            model, tokens, budget=args.budget, num_sinks=S, chunk=args.chunk, bucket=args.bucket
        )
        print(
            f"\n[position] perplexity by position of the predicted token: {args.streams} streams x "
            f"{args.stream_len} tokens, budget {args.budget}, chunk {args.chunk}; dense and window past "
            f"{ctx} with allow_long_context ({time.perf_counter() - t0:.0f} s)"
        )
        print(format_position(rows))
    if "budgets" in sections:
        tokens = eval_streams(args.budget_len, args.budget_streams)
        t0 = time.perf_counter()
        rows = measure_budgets(model, tokens, args.budgets, num_sinks=S, chunk=args.budget_chunk)
        print(
            f"\n[budgets] perplexity against KV bytes: {args.budget_streams} streams x {args.budget_len} "
            f"tokens (within the context), chunk {args.budget_chunk}; 'ppl late' = targets "
            f"{args.budget_len // 2}..{args.budget_len - 1} ({time.perf_counter() - t0:.0f} s)"
        )
        print(format_budgets(rows, args.budget_len))
    if "memory" in sections:
        tokens = eval_streams(max(args.memory_at), 1)
        rows = measure_memory(
            model, tokens, args.memory_at, budget=args.budget, num_sinks=S, chunk=args.chunk
        )
        print(
            f"\n[memory] cache.nbytes() of one stream row after this many tokens, budget {args.budget}, "
            f"chunk {args.chunk}"
        )
        print(format_memory(rows))
    if "sinks" in sections:
        tokens = eval_streams(args.sink_len, args.streams)
        mass = attention_to_first(model, tokens, args.first)
        print(
            f"\n[sinks] attention mass on the first {args.first} tokens, queries at positions "
            f"{args.first}..{args.sink_len - 1}, mean over {args.streams} streams and {cfg.num_heads} "
            f"heads; 'uniform' = the share of evenly spread attention"
        )
        print(format_sinks(mass, args.first, args.sink_len))
    if "chunking" in sections:
        tokens = eval_streams(args.chunk_check_len, 2)
        chunks = sorted({1, args.chunk})
        rows = measure_chunking(model, tokens, chunks, budget=args.budget, num_sinks=S)
        print(
            f"\n[chunking] one token per call against {args.chunk}: 2 streams x {args.chunk_check_len} "
            f"tokens, budget {args.budget}; ratios against chunk 1, same run"
        )
        print(format_chunking(rows))
    status = 0
    if "heads" in sections:
        try:
            import kvlib.cache.heads  # noqa: F401
        except ImportError as err:
            print(f"\n[heads] skipped: kvlib.cache.heads is not available ({err})")
            status = 1
        else:
            tokens = eval_streams(args.budget_len, args.budget_streams)
            calibration = eval_streams(args.calibration_len, args.calibration_rows, split="train")
            t0 = time.perf_counter()
            rows = measure_head_pruning(
                model,
                tokens,
                calibration,
                args.num_full,
                num_sinks=S,
                window=args.head_window,
                seeds=args.seeds,
                chunk=args.budget_chunk,
            )
            print(
                f"\n[heads] head pruning: the 'full' KV heads keep every token, the others {S} sinks + the "
                f"last {args.head_window}; {args.budget_streams} streams x {args.budget_len} tokens, chunk "
                f"{args.budget_chunk}; scores from {args.calibration_rows} x {args.calibration_len} training "
                f"tokens; random = mean of {args.seeds} seeds; formula = pruned_kv_fraction "
                f"({time.perf_counter() - t0:.0f} s)"
            )
            print(format_heads(rows))
            problems = head_pruning_mismatches(rows)
            for problem in problems:
                print(f"MISMATCH: {problem}")
            status = 1 if problems else status
    print(f"\n{time.perf_counter() - start:.0f} s in all")
    return status
