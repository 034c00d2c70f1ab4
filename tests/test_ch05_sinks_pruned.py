"""Chapter 05's sink_positions and pruned_fraction checks, beyond what tests/test_checks.py runs.

The sweeps must reach every regime the docstrings separate (and every classic mistake the checks name
must differ from the right answer on some case, or its message could never be shown); the checks
against real caches must agree with the formula; and the parts no mutant in autograder/mutants/
reaches keep their wording: a result of the wrong kind (three outputs, 2-d, float positions, a bool, a
NaN), a position listed twice that no named mistake explains, a value wrong in no named way.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from exercise_edits import failure_message

from autograder.checks.ch05 import pruned, sinks
from autograder.checks.common import CheckFailed

pytestmark = [pytest.mark.ch05, pytest.mark.autograder]

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "solutions" / "05_eviction.ipynb"

SINK_SIG = "def sink_positions(seen, new_tokens, num_sinks, window):\n"
PRUNED_SIG = "def pruned_fraction(full_heads, seq_len, num_sinks, window):\n"
RIGHT_STREAM = (
    "    recent = min(max(seen - num_sinks, 0), window)\n"
    "    stream = torch.cat([torch.arange(min(seen, num_sinks)),\n"
    "                        torch.arange(seen - recent, seen + new_tokens)])\n"
)
RIGHT_FRACTION = (
    "    heads, full = full_heads.numel(), int(full_heads.sum())\n"
    "    value = (full * seq_len + (heads - full) * min(seq_len, num_sinks + window)) / (heads * seq_len)\n"
)


def _message(grade_id: str, source: str) -> str:
    return failure_message(NOTEBOOK, grade_id, source)


# --- sink_positions ------------------------------------------------------------------------------------


def _all_sink_cases() -> list[tuple[int, int, int, int]]:
    return sinks.SWEEP + sinks.LARGE


def test_sink_sweep_reaches_every_regime() -> None:
    cases = _all_sink_cases()
    regimes = {
        "seen < num_sinks": any(0 < s < S for s, _, S, _ in cases),
        "window filling": any(S <= s < S + W and s > S for s, _, S, W in cases),
        "evicting": any(s > S + W for s, _, S, W in cases),
        "num_sinks 0 and evicting": any(S == 0 and s > W for s, _, S, W in cases),
        "new_tokens 0 after tokens": any(n == 0 and s > 0 for s, n, _, _ in cases),
        "empty cache, nothing new": (0, 0) in {(s, n) for s, n, _, _ in cases},
        "window 1 evicting": any(W == 1 and s > S + 1 for s, _, S, W in cases),
        "a stream of 100000 tokens": any(s >= 100_000 for s, *_ in cases),
        "more than 4096 keys": any(len(sinks._reference(*c)) > 4096 for c in cases),
    }
    assert all(regimes.values()), regimes


def test_every_named_sink_mistake_differs_somewhere_in_the_sweep() -> None:
    named = set()
    for case in sinks.SWEEP:
        want = sinks._reference(*case)
        named |= {m for m, v in sinks._stream_variants(*case).items() if v != want}
        named |= {m for m, v in sinks._rope_variants(want, case[1]).items() if v != list(range(len(want)))}
    every = set(sinks._stream_variants(5, 1, 2, 2)) | set(sinks._rope_variants([0], 1))
    assert named == every, every - named


def test_reference_agrees_with_kvlib_and_with_a_sink_cache() -> None:
    from kvlib.cache.evict import sink_positions

    for case in _all_sink_cases():
        stream, rope = sink_positions(*case)
        assert stream.tolist() == sinks._reference(*case) and rope.tolist() == list(range(stream.numel()))
    sinks._against_cache(sink_positions, 3, 2, [10, 1, 2, 1, 5])  # the cache and the formula agree


def test_cache_drive_names_the_cache() -> None:
    def wrong(seen, new_tokens, num_sinks, window):  # keeps one token too many once the window is full
        recent = min(max(seen - num_sinks, 0), window + 1)
        stream = torch.cat(
            [torch.arange(min(seen, num_sinks)), torch.arange(seen - recent, seen + new_tokens)]
        )
        return stream, torch.arange(stream.numel())

    with pytest.raises(
        CheckFailed, match=r"SinkKVCache\(num_sinks=2, window=5\)\.update of 1 token\(s\) after 8"
    ):
        sinks._against_cache(wrong, 2, 5, [4, 1, 1, 1, 1, 1])


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (RIGHT_STREAM + "    return stream, stream\n", "what caching rotated keys amounts to"),
        (RIGHT_STREAM + "    return stream, torch.arange(1, stream.numel() + 1)\n", "rope starts at 1"),
        (
            RIGHT_STREAM + "    return stream, torch.cat([torch.arange(stream.numel() - new_tokens), "
            "torch.arange(new_tokens)])\n",
            "restart at 0",
        ),
        (
            RIGHT_STREAM + "    return stream, torch.arange(stream.numel()), stream\n",
            "a tuple (stream, rope)",
        ),
        (RIGHT_STREAM + "    return stream[None], torch.arange(stream.numel())\n", "must be 1-d"),
        (
            RIGHT_STREAM + "    return stream.float(), torch.arange(stream.numel())\n",
            "positions are integers",
        ),
        (
            RIGHT_STREAM
            + "    stream = torch.cat([stream, stream[-1:]])\n    return stream, torch.arange(len(stream))\n",
            "names a position twice",
        ),
        (
            RIGHT_STREAM
            + "    stream = stream + (stream > 5)\n    return stream, torch.arange(len(stream))\n",
            "stream is wrong: expected [0, 1, 6, 7, 8, 9, 10], got [0, 1, 7, 8, 9, 10, 11]",
        ),
        (
            "    stream = torch.arange(seen + new_tokens)\n    return stream, torch.arange(len(stream))\n",
            "nothing is evicted",
        ),
        (
            "    recent = min(max(seen - num_sinks, 0), window)\n"
            "    stream = torch.cat([torch.arange(seen - recent, seen), torch.arange(min(seen, num_sinks)),\n"
            "                        torch.arange(seen, seen + new_tokens)])\n"
            "    return stream, torch.arange(len(stream))\n",
            "the order is wrong",
        ),
        (  # with one new token, evicting before returning and a window one short give the same keys
            "    total = seen + new_tokens\n    recent = min(max(total - num_sinks, 0), window)\n"
            "    stream = torch.cat([torch.arange(min(total, num_sinks)),\n"
            "                        torch.arange(total - recent, total)])\n"
            "    return stream, torch.arange(len(stream))\n",
            "window of them once the stream is long enough (off by one); or the new tokens were added before "
            "evicting",
        ),
    ],
)
def test_sink_messages(body: str, words: str) -> None:
    assert words in _message("sink_positions", SINK_SIG + body)


# --- pruned_fraction -----------------------------------------------------------------------------------


def test_pruned_edge_cases_cover_the_docstring() -> None:
    cases = pruned.EDGE_CASES
    assert any(int(p.sum()) == 0 for p, *_ in cases)  # no full head
    assert any(bool(p.all()) for p, *_ in cases)  # every head full
    assert any(n < S + W for _, n, S, W in cases) and any(n == S + W for _, n, S, W in cases)
    assert any(n < S for _, n, S, _ in cases)  # fewer tokens than sinks
    assert any(S == 0 and n > W for _, n, S, W in cases)  # no sinks, evicting
    assert any(W == 1 for *_, W in cases) and any(n == 1 for _, n, _, _ in cases)
    assert any(len(set(p.sum(1).tolist())) == p.shape[0] > 2 for p, *_ in cases)  # a count per layer
    assert any(n >= 1_000_000 for _, n, _, _ in cases)


def test_every_named_pruned_mistake_differs_on_an_edge_case() -> None:
    named = set()
    for case in pruned.EDGE_CASES:
        want = pruned._reference(*case)
        named |= {m for m, v in pruned._variants(*case).items() if not math.isclose(v, want, rel_tol=1e-6)}
    assert named == set(pruned._variants(*pruned.EDGE_CASES[0])), "a mistake no edge case can show"


def test_pruned_reference_agrees_with_kvlib_and_the_cache() -> None:
    from kvlib.cache.heads import pruned_kv_fraction

    for case in pruned.EDGE_CASES:
        assert pruned._reference(*case) == pruned_kv_fraction(*case)
    plan = torch.tensor([[False, True], [False, False], [True, True]])
    pruned._against_cache(pruned_kv_fraction, plan, 3, 4, [2, 1, 1, 5, 1, 9], dtype=torch.float16)


def test_cache_drive_names_the_cache_measurement() -> None:
    def off(full_heads, seq_len, num_sinks, window):
        return (
            0.999
            * (int(full_heads.sum()) * seq_len + int((~full_heads).sum()) * min(seq_len, num_sinks + window))
            / (full_heads.numel() * seq_len)
        )

    with pytest.raises(CheckFailed, match=r"a HeadSplitKVCache holding 2 tokens measures nbytes\(\)"):
        pruned._against_cache(off, torch.tensor([[True, False]]), 1, 1, [2, 3])


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("    return True\n", "got the bool True"),
        (RIGHT_FRACTION + "    return float('nan')\n", "must return a finite fraction"),
        (RIGHT_FRACTION + "    return value * 1.5\n", "the fraction kept is in (0, 1]"),
        (
            RIGHT_FRACTION + "    return value * 0.9\n",
            "full heads hold seq_len tokens, the others min(seq_len",
        ),
        (RIGHT_FRACTION + "    return round(value, 3)\n", "do not round the answer"),
        (
            "    heads, full = full_heads.numel(), int(full_heads.sum())\n"
            "    return float((full * seq_len + (heads - full) * min(seq_len, num_sinks + window)) "
            "// (heads * seq_len))\n",
            "integer division",
        ),
    ],
)
def test_pruned_messages(body: str, words: str) -> None:
    assert words in _message("pruned_fraction", PRUNED_SIG + body)


def test_pruned_limit_on_a_long_stream_only() -> None:
    source = (
        PRUNED_SIG
        + RIGHT_FRACTION
        + "    return int(full_heads.sum()) / heads if seq_len >= 10**6 else value\n"
    )
    message = _message("pruned_fraction", source)
    assert "seq_len=1000000" in message and "the limit F / N" in message


def test_pruned_hidden_checks_pass_a_non_contiguous_plan() -> None:
    source = PRUNED_SIG + "    flat = full_heads.view(-1)\n" + RIGHT_FRACTION + "    return value\n"
    assert "view" in _message("pruned_fraction", source)  # the transposed plan the hidden checks pass
