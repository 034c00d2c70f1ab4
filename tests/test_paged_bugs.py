"""kvlib.paged.bugs: each buggy manager really has its bug, the correct manager never breaks an invariant,
and the shortest exposing sequences the expose_bugs checks assume (SHORTEST) are the shortest there are.

The lower bounds come from an exhaustive search over every sequence of up to three operations built from
sequence ids {0, 1}, tokens {1, 2} and prompts of 1 to BLOCK_SIZE + 1 tokens (an empty block, a partial
one, a full one and a full one plus a partial: every case the managers tell apart within three
operations), up to renaming sequence ids and tokens (the managers compare ids and tokens only for
equality, so a renamed sequence runs the same way).
"""

from __future__ import annotations

import itertools
import random
import re

import pytest

from autograder.checks.ch06.find_bugs import SHORTEST, SLACK
from kvlib.paged import BlockManager
from kvlib.paged.bugs import BLOCK_SIZE, BUGGY_MANAGERS, INVARIANTS, OPS, check_ops, run_ops

pytestmark = pytest.mark.ch06

HIT = [1, 2, 3, 4]
SOLUTION = {
    "A": ([("allocate", 0, HIT), ("free", 0), ("allocate", 1, HIT)], "registered_blocks_cached"),
    "B": ([("allocate", 0, [1]), ("fork", 0, 1), ("append", 0, 2), ("append", 1, 3)], "reads_own_tokens"),
    "C": ([("allocate", 0, [1])], "cached_blocks_full"),
    "D": ([("allocate", 0, HIT), ("free", 0), ("reclaim", 1)], "block_states"),
    "E": ([("allocate", 0, [1, 2, 3]), ("allocate", 1, [1, 2, 3])], "one_block_per_prefix"),
}
# The invariant each bug breaks first on random walks. B's overwritten slot is sometimes read by no
# sequence but only recorded by the prefix cache (the sharer that wrote it first has been freed), so it
# shows as a cached block whose KV changed.
FIRST_BROKEN = {
    "A": {"registered_blocks_cached"},
    "B": {"reads_own_tokens", "cached_blocks_full"},
    "C": {"cached_blocks_full"},
    "D": {"block_states"},
    "E": {"one_block_per_prefix"},
}


def test_letters_cover_the_five_bugs_and_the_solution_table_matches_the_checks() -> None:
    assert sorted(BUGGY_MANAGERS) == list("ABCDE") == sorted(SHORTEST)
    assert all(issubclass(cls, BlockManager) and cls is not BlockManager for cls in BUGGY_MANAGERS.values())
    assert {len(ops) for ops, _ in SOLUTION.values()} == set(SHORTEST.values())
    assert all(len(SOLUTION[c][0]) == SHORTEST[c] for c in SHORTEST)
    assert SLACK == 2


@pytest.mark.parametrize("letter", sorted(SOLUTION))
def test_shortest_sequence_exposes_the_bug_and_runs_clean_on_the_correct_manager(letter: str) -> None:
    ops, invariant = SOLUTION[letter]
    assert run_ops(BlockManager, ops).clean
    run = run_ops(BUGGY_MANAGERS[letter], ops)
    assert run.violation == (len(ops) - 1, invariant), str(run)
    assert list(run.steps[-1].broken) == [invariant], "the minimal sequence breaks exactly one invariant"


def _prompts(max_len: int) -> list[tuple[int, ...]]:
    return [p for n in range(1, max_len + 1) for p in itertools.product((1, 2), repeat=n)]


def _next_ops(prefix: list[tuple]) -> list[tuple]:
    """Every operation over ids {0, 1}, tokens {1, 2}, reclaim of 1 or 2 blocks, canonical up to renaming:
    a new sequence id is the smallest unused one and a new token the smallest unseen one."""
    ids = {op[1] for op in prefix if op[0] == "allocate"} | {op[2] for op in prefix if op[0] == "fork"}
    new_id = min({0, 1} - ids, default=None)
    seen = {t for op in prefix if op[0] == "allocate" for t in op[2]}
    seen |= {op[2] for op in prefix if op[0] == "append"}

    def canonical(tokens: tuple[int, ...]) -> bool:
        known = set(seen)
        for t in tokens:
            if t not in known and t != min({1, 2} - known):
                return False
            known.add(t)
        return True

    ops: list[tuple] = []
    if new_id is not None:
        ops += [("allocate", new_id, p) for p in _prompts(BLOCK_SIZE + 1) if canonical(p)]
    for s in sorted(ids):
        ops += [("append", s, t) for t in (1, 2) if canonical((t,))]
        ops.append(("free", s))
        if new_id is not None:
            ops.append(("fork", s, new_id))
    ops += [("reclaim", 1), ("reclaim", 2)]
    return ops


def _exposing(max_len: int, letters: str) -> dict[str, list[tuple]]:
    """The first sequence found (shortest first) that exposes each letter's bug, searching every
    canonical sequence of up to ``max_len`` operations that runs cleanly on the correct manager."""
    found: dict[str, list[tuple]] = {}
    frontier: list[list[tuple]] = [[]]
    for _ in range(max_len):
        grown = []
        for prefix in frontier:
            for op in _next_ops(prefix):
                ops = prefix + [op]
                if not run_ops(BlockManager, ops).clean:
                    continue  # an extension of a refused or broken run is not clean either
                grown.append(ops)
                for letter in letters:
                    if letter not in found and run_ops(BUGGY_MANAGERS[letter], ops).violation:
                        found[letter] = ops
        frontier = grown
    return found


def test_no_bug_is_exposed_by_fewer_operations_than_shortest_up_to_two() -> None:
    found = _exposing(2, "ABCDE")
    assert {c: len(ops) for c, ops in found.items()} == {"C": SHORTEST["C"], "E": SHORTEST["E"]}


def test_bugs_a_b_d_need_three_operations_and_b_needs_four() -> None:
    """Three operations expose A and D but not B; B's four-operation solution is above."""
    found = _exposing(3, "ABD")
    assert sorted(found) == ["A", "D"]
    assert len(found["A"]) == SHORTEST["A"] == 3 and len(found["D"]) == SHORTEST["D"] == 3
    assert SHORTEST["B"] == 4


def _walk(rng: random.Random, n: int) -> list[tuple]:
    ops: list[tuple] = []
    live: list[int] = []
    next_id = 0
    for _ in range(n):
        r = rng.random()
        if r < 0.3 or not live:
            ops.append(("allocate", next_id, [rng.choice((1, 2)) for _ in range(rng.randint(1, 7))]))
            live.append(next_id)
            next_id += 1
        elif r < 0.6:
            ops.append(("append", rng.choice(live), rng.choice((1, 2))))
        elif r < 0.72:
            ops.append(("fork", rng.choice(live), next_id))
            live.append(next_id)
            next_id += 1
        elif r < 0.9:
            seq_id = rng.choice(live)
            live.remove(seq_id)
            ops.append(("free", seq_id))
        else:
            ops.append(("reclaim", rng.randint(1, 2)))
    return ops


WALKS = [_walk(random.Random(seed), 30) for seed in range(150)]


def test_random_walks_never_break_an_invariant_of_the_correct_manager() -> None:
    for ops in WALKS:
        run = run_ops(BlockManager, ops)
        assert run.violation is None, str(run)
        assert len(run.steps) == len(ops)


@pytest.mark.parametrize("letter", sorted(BUGGY_MANAGERS))
def test_random_walks_find_each_bug_and_it_breaks_its_own_invariant_first(letter: str) -> None:
    firsts = [v[1] for ops in WALKS if (v := run_ops(BUGGY_MANAGERS[letter], ops).violation)]
    assert len(firsts) >= 10, f"only {len(firsts)} of {len(WALKS)} walks find bug {letter}"
    assert set(firsts) <= FIRST_BROKEN[letter], set(firsts)


@pytest.mark.parametrize("letter", sorted(SOLUTION))
def test_each_shortest_sequence_exposes_only_its_own_bug_and_c_where_a_partial_block_is_admitted(
    letter: str,
) -> None:
    """The bugs are distinct: a letter's shortest sequence leaves the other managers clean, except C's,
    whose bug fires at once on any prompt that ends in a partly filled block."""
    ops, _ = SOLUTION[letter]
    exposed = {c for c in BUGGY_MANAGERS if run_ops(BUGGY_MANAGERS[c], ops).violation}
    partial = any(op[0] == "allocate" and len(op[2]) % BLOCK_SIZE for op in ops)
    assert exposed == {letter} | ({"C"} if partial else set()), exposed


def test_invariants_and_ops_are_named_and_described() -> None:
    assert list(INVARIANTS) == [
        "ref_counts",
        "block_states",
        "registered_blocks_cached",
        "reads_own_tokens",
        "cached_blocks_full",
        "one_block_per_prefix",
    ]
    assert all(isinstance(text, str) and text for text in INVARIANTS.values())
    assert set(OPS) == {"allocate", "append", "fork", "free", "reclaim"}


def test_run_log_prints_every_step_and_the_first_violation() -> None:
    ops, invariant = SOLUTION["A"]
    text = str(run_ops(BUGGY_MANAGERS["A"], ops))
    assert text.startswith("ManagerA:") and f"BROKEN {invariant}" in text
    assert f"first violation: {invariant} at op 2" in text
    assert "no invariant broken" in str(run_ops(BlockManager, ops))


def test_a_refused_operation_is_logged_and_the_run_goes_on() -> None:
    run = run_ops(BlockManager, [("append", 3, 1), ("allocate", 0, [1] * 30), ("allocate", 0, [1])])
    assert [s.result.split(":")[0] for s in run.raised] == ["raised KeyError", "raised OutOfBlocks"]
    assert run.violation is None and not run.clean and len(run.steps) == 3


def test_the_run_stops_at_the_first_violation() -> None:
    ops = SOLUTION["C"][0] + [("append", 0, 2), ("free", 0)]
    assert len(run_ops(BUGGY_MANAGERS["C"], ops).steps) == 1


@pytest.mark.parametrize(
    ("ops", "error", "words"),
    [
        ("allocate", TypeError, "list of operation tuples"),
        ([("allocate", 0)], ValueError, "allocate takes (seq_id, prompt), got 1"),
        ([("append", 0, 1, 2)], ValueError, "append takes (seq_id, token), got 3"),
        ([("evict", 1)], ValueError, "unknown operation"),
        (["free"], TypeError, "ops[0] must be a tuple"),
        ([()], TypeError, "ops[0] must be a tuple"),
        ([("allocate", 0, [])], ValueError, "at least one token"),
        ([("allocate", 0, "12")], TypeError, "prompt"),
        ([("free", -1)], ValueError, "ops[0] seq_id"),
        ([("free", 0), ("reclaim", -1)], ValueError, "ops[1] n"),
        ([("append", 0, 1.5)], TypeError, "ops[0] token"),
        ([("fork", True, 1)], TypeError, "ops[0] parent_id"),
    ],
)
def test_malformed_operations_are_refused_before_anything_runs(ops, error, words: str) -> None:
    with pytest.raises(error, match=re.escape(words)):
        run_ops(BlockManager, ops)


def test_check_ops_normalises_operations_to_tuples() -> None:
    assert check_ops([["allocate", 0, (1, 2)], ["reclaim", 1]]) == [("allocate", 0, [1, 2]), ("reclaim", 1)]


def test_manager_cls_must_be_a_block_manager_class() -> None:
    with pytest.raises(TypeError, match="manager_cls"):
        run_ops(BlockManager(8, 3), [])
    with pytest.raises(TypeError, match="manager_cls"):
        run_ops(dict, [])
