"""Chapter 05's h2o_scores and h2o_keep checks, beyond what tests/test_checks.py runs.

The references the checks use are written from the docstrings; these tests hold them to kvlib (the
score update everywhere, the keep rule on every state a real H2OKVCache evicts from), hold the hidden
sweeps to the docstrings' edge cases, and check the messages no mutant in autograder/mutants/ reaches.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import torch
from exercise_edits import edited_solution, failure_message

from autograder.checks.ch05 import h2o

pytestmark = [pytest.mark.ch05, pytest.mark.autograder]

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "solutions" / "05_eviction.ipynb"

CACHE_RUNS = [
    (21, 2, 8, 2, (7, 1, 2, 1, 1), 3, 2, 1),
    (22, 3, 4, 4, (9, 1, 3, 2, 1), 4, 3, 0),
    (23, 2, 6, 3, (6, 2, 1), 0, 2, 1),
    (5, 2, 8, 2, (4, 1, 2, 1), 0, 2, 2),
    (11, 3, 8, 2, (6, 1, 3, 1, 1, 2), 3, 2, 0),
]


def _edited(grade_id: str, *edits: tuple[str, str]) -> str:
    return edited_solution(NOTEBOOK, grade_id, *edits)


def _message(grade_id: str, source: str) -> str:
    return failure_message(NOTEBOOK, grade_id, source)


def _recorded_keep_states() -> list[tuple]:
    states = []

    def record(*args):
        states.append(tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args))
        return h2o.keep_reference(*args)

    h2o.h2o_keep_hidden(record)
    return states


def test_score_reference_is_kvlibs_update_on_every_case() -> None:
    from kvlib.cache.evict import h2o_accumulate

    seen = []

    def record(scores, weights):
        seen.append(weights.dtype)
        want = h2o_accumulate(scores, weights)
        assert torch.allclose(h2o.scores_reference(scores, weights).float(), want, atol=1e-5, rtol=1e-5)
        return want

    h2o.h2o_scores_hidden.__wrapped__(record)  # unwatched: record hands in kvlib's own result
    assert {torch.float32, torch.float16, torch.bfloat16} <= set(seen)


@pytest.mark.parametrize("run", CACHE_RUNS)
def test_keep_reference_is_kvlibs_rule_on_real_cache_states(run: tuple) -> None:
    from kvlib.cache.evict import h2o_keep_mask

    heavy, recent, sinks = run[5], run[6], run[7]
    _, choices = h2o._cache_run(*run)
    assert choices, "the run must evict"
    for scores, positions, seen in choices:
        want = h2o_keep_mask(scores, positions, seen, sinks, heavy, recent)
        assert torch.equal(h2o.keep_reference(scores, positions, seen, sinks, heavy, recent), want)


def test_kvlibs_keep_mask_follows_the_docstring_on_every_hidden_state() -> None:
    """kvlib's h2o_keep_mask (the reference the notebook's fallback uses) keeps the protected tokens plus
    the `heavy` best others, also on states where fewer than num_sinks + recent tokens are protected."""
    from kvlib.cache.evict import h2o_keep_mask

    for args in _recorded_keep_states():
        assert torch.equal(h2o_keep_mask(*args), h2o.keep_reference(*args))


def test_hidden_keep_states_reach_every_edge_case_of_the_docstring() -> None:
    states = _recorded_keep_states()
    reached = dict.fromkeys(
        ("heavy 0", "recent 0", "sinks 0", "fewer than heavy", "more than heavy", "overlap", "sinks missing",
         "window gaps", "tie at the cut", "rows differ", "one token", "long"), 0
    )  # fmt: skip
    for scores, positions, seen, sinks, heavy, recent in states:
        protected = h2o._protected(positions, seen, sinks, recent)
        others = (~protected).sum(-1)
        reached["heavy 0"] += heavy == 0 and bool((others > 0).any())
        reached["recent 0"] += recent == 0
        reached["sinks 0"] += sinks == 0
        reached["fewer than heavy"] += bool((others < heavy).any())
        reached["more than heavy"] += bool((others > heavy).any())
        reached["overlap"] += seen - recent < sinks and recent > 0 and sinks > 0
        want_sinks = min(sinks, seen)
        reached["sinks missing"] += bool(((positions < sinks).sum(-1) < want_sinks).any())
        window = (positions >= seen - recent).sum(-1)
        reached["window gaps"] += bool((window < min(recent, seen)).any())
        reached["rows differ"] += bool((positions != positions[:1, :1]).any())
        reached["one token"] += positions.shape[-1] == 1
        reached["long"] += positions.shape[-1] > 256
        for b, g in zip(*torch.nonzero(others > heavy, as_tuple=True)):
            cand = scores[b, g][~protected[b, g]].sort(descending=True).values
            if heavy > 0 and cand[heavy - 1] == cand[heavy]:
                reached["tie at the cut"] += 1
    assert all(count >= 1 for count in reached.values()), reached
    assert reached["tie at the cut"] >= 5 and reached["rows differ"] >= 20, reached


def test_checks_are_quick() -> None:
    solution = {}
    for gid in ("h2o_scores", "h2o_keep"):
        exec(_edited(gid), {"torch": torch}, solution)  # noqa: S102 - the notebook's own solution source
    started = time.perf_counter()
    h2o.h2o_scores_visible(solution["h2o_scores"])
    h2o.h2o_scores_hidden(solution["h2o_scores"])
    h2o.h2o_keep_visible(solution["h2o_keep"])
    h2o.h2o_keep_hidden(solution["h2o_keep"])
    assert time.perf_counter() - started < 6  # about 0.5 s on a 2-core machine


def test_scores_per_query_head_gets_the_shape_hint() -> None:
    source = _edited(
        "h2o_scores",
        (
            "return scores + received",
            "return scores[:, :, None].repeat_interleave(G, 1)[:, :, 0] + weights.float().sum(2)",
        ),
    )
    assert "sum over the G query heads that share a KV head" in _message("h2o_scores", source)


def test_scores_reused_buffer_is_refused() -> None:
    source = "_buf = {}\n" + _edited(
        "h2o_scores",
        (
            "return scores + received",
            "out = _buf.setdefault(tuple(scores.shape), torch.empty(scores.shape))\n"
            "    return torch.add(scores, received, out=out)",
        ),
    )
    assert "a reused buffer" in _message("h2o_scores", source)


def test_keep_window_by_index_is_named() -> None:
    source = _edited(
        "h2o_keep",
        (
            "protected = (positions < num_sinks) | (positions >= seen - recent)",
            "n = positions.shape[-1]\n"
            "    protected = (positions < num_sinks) | (torch.arange(n) >= n - recent)",
        ),
    )
    assert "recent window was taken by index" in _message("h2o_keep", source)


def test_keep_per_batch_row_topk_is_named() -> None:
    source = _edited(
        "h2o_keep",
        (
            "    order = torch.argsort(candidates, dim=-1, descending=True, stable=True)"
            "  # stable: lower position first",
            "    B, KV, n = candidates.shape\n"
            "    flat = torch.argsort(candidates.reshape(B, KV * n), dim=-1, descending=True, stable=True)\n"
            "    flat = flat[:, : heavy * KV]\n"
            "    picked = torch.zeros(B, KV * n, dtype=torch.bool).scatter(-1, flat, True).view(B, KV, n)\n"
            "    return protected | (picked & ~protected)\n"
            "    order = torch.argsort(candidates, dim=-1, descending=True, stable=True)",
        ),
    )
    assert "once per batch row over all its KV heads" in _message("h2o_keep", source)


def test_keep_unrecognised_mistake_names_the_token() -> None:
    source = _edited(
        "h2o_keep",
        (
            "return protected | (heavy_kept & ~protected)",
            "return protected | (heavy_kept & ~protected) ^ (scores > 2.9)",
        ),
    )
    message = _message("h2o_keep", source)
    assert re.search(
        r"in batch row \d, KV head \d the token at position \d+ \(.*\) should be (kept|evicted)", message
    )
    assert message == _message("h2o_keep", source)  # seeded: the same failure every time


def test_keep_float_mask_is_refused() -> None:
    source = _edited(
        "h2o_keep",
        ("return protected | (heavy_kept & ~protected)", "return (protected | heavy_kept).float()"),
    )
    assert "must return a torch.bool mask, got torch.float32" in _message("h2o_keep", source)
