"""Chapter 06's chain-hash and prefix-cache checks, beyond what tests/test_checks.py runs for every exercise.

The prefix-cache grade rests on recordings of a kvlib BlockManager's calls on its HashPrefixCache: they must
be the same on every run (a grade must not depend on the run), exercise every kind of call, and keep the
property that makes the "least recently used idle block, deeper first" reading of the docstring equal to
"least recently used idle leaf" (a parent is never idle with an older time than its idle child), which is
why autograder/correct/06_paged/prefix_cache/global_lru_deepest.py is a correct answer.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from autograder.checks.ch06 import prefix
from autograder.harness import run_exercise

pytestmark = [pytest.mark.ch06, pytest.mark.autograder]

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "solutions" / "06_paged.ipynb"


def _all() -> list[prefix._Recording]:
    return prefix._recordings(visible=True) + prefix._recordings(visible=False)


def test_recordings_are_the_same_on_every_run() -> None:
    first = [[(op.name, op.args, op.want, op.cached, op.num_evictable) for op in r.ops] for r in _all()]
    again = [[(op.name, op.args, op.want, op.cached, op.num_evictable) for op in r.ops] for r in _all()]
    assert first == again


def test_hidden_recordings_exercise_every_call_and_outcome() -> None:
    ops = [op for r in prefix._recordings(visible=False) for op in r.ops]
    names = {op.name for op in ops}
    assert names == {"insert_block", "match", "lock", "unlock", "evict"}
    assert any(op.name == "insert_block" and op.want is False for op in ops), "no duplicate prefix"
    assert any(op.name == "match" and op.want for op in ops), "no hit"
    assert any(op.name == "match" and not op.want for op in ops), "no miss"
    assert any(op.name == "evict" and op.args[0] > 1 for op in ops), "no multi-block eviction"
    # a prompt of exactly k cached blocks, where matching the whole prompt would return one block more
    assert any(prefix._WHOLE_PROMPT in op.hint for op in ops if op.name == "match")
    # the colliding hashes really put different prefixes under one key
    assert any(prefix._KEY_ONLY in op.hint for op in ops if op.name == "match")


def test_an_idle_parent_is_never_older_than_its_idle_child() -> None:
    for recording in _all():
        for op in recording.ops:
            if op.name != "evict":
                continue
            parents, locked, times = op.hint["parents"], op.hint["locked"], op.hint["times"]
            for child, parent in parents.items():
                if parent is None:
                    continue
                if child in locked:  # the manager's contract, which the docstring states
                    assert parent in locked, f"{recording.title}: block {child} locked under idle {parent}"
                elif parent not in locked:
                    assert times[parent] >= times[child], f"{recording.title}: {parent} older than {child}"


def test_subclassing_kvlibs_abstract_prefix_cache_scores_zero() -> None:
    """Inheriting kvlib's LRU and eviction machinery and writing only the lookup is still delegation."""
    source = (
        "from kvlib.paged.prefix import PrefixCache as _Base\n"
        "class PrefixCache(_Base):\n"
        "    def _lookup(self, tokens):\n"
        "        return []\n"
    )
    with pytest.raises(AssertionError, match="delegates to kvlib"):
        run_exercise(NOTEBOOK, "prefix_cache", source)


def test_calling_the_setup_block_hash_is_not_delegation(capsys) -> None:
    """The notebook's block_hash is kvlib's default_block_hash: both exercises must call it freely."""
    run_exercise(NOTEBOOK, "block_hashes")
    run_exercise(NOTEBOOK, "prefix_cache")
    out = capsys.readouterr().out
    assert "block_hashes: hidden tests passed" in out and "prefix_cache: hidden tests passed" in out
