"""Chapter 06's append_token, fork and append_token_cow checks, beyond what tests/test_checks.py runs.

The hidden checks replay seeded random walks; these tests hold the walks to what the docstrings need
(every copy-on-write case, a pool running out in the middle of an append and of a copy, forks in a block
and at a boundary, sequences past several block boundaries), and check the parts of the grader that no
mutant in autograder/mutants/ reaches: results of the wrong type, a fork that hands back something else
than a table or changes its parent, a returned list reused by later calls, and the wording of a failure.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from exercise_edits import edited_solution, failure_message

from autograder.checks.ch06 import tables

pytestmark = [pytest.mark.ch06, pytest.mark.autograder]

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "solutions" / "06_paged.ipynb"


def _edited(grade_id: str, *edits: tuple[str, str]) -> str:
    return edited_solution(NOTEBOOK, grade_id, *edits)


def _message(grade_id: str, source: str) -> str:
    return failure_message(NOTEBOOK, grade_id, source)


def _walks(mode: str, walks: tuple) -> list[tables._Walk]:
    import kvlib.paged.tables as reference

    fn = {"append": reference.append_token, "fork": reference.fork_table, "cow": reference.append_token_cow}
    return [tables._random_walk(fn[mode], mode, *walk) for walk in walks]


def test_append_walks_cross_boundaries_and_run_out() -> None:
    for walk in _walks("append", tables.APPEND_WALKS):
        seen = walk.outcomes
        assert seen.get("append_token new", 0) >= 10, (walk.label, seen)
        assert seen.get("append_token new OutOfBlocks", 0) >= 1, (walk.label, seen)
        assert seen.get("fork at a block boundary", 0) >= 3, (walk.label, seen)
        assert walk.longest >= 3 * walk.block_size, (walk.label, walk.longest)
        if walk.block_size > 1:
            assert seen.get("append_token in place", 0) >= 10, (walk.label, seen)


@pytest.mark.parametrize("mode", ["fork", "cow"])
def test_copy_on_write_walks_reach_every_case(mode: str) -> None:
    walks = _walks(mode, tables.FORK_WALKS if mode == "fork" else tables.COW_WALKS)
    for walk in walks:
        assert walk.longest >= 3 * walk.block_size, (walk.label, walk.longest)
        assert walk.outcomes.get("fork at a block boundary", 0) >= 3, (walk.label, walk.outcomes)
        if walk.block_size > 1:  # blocks of one token are never partly filled: nothing to copy
            for case in ("copy", "in place", "new"):
                assert walk.outcomes.get(f"append_token_cow {case}", 0) >= 10, (walk.label, case)
            assert walk.outcomes.get("fork in a block", 0) >= 10, (walk.label, walk.outcomes)
    total = {key: sum(w.outcomes.get(key, 0) for w in walks) for key in walks[1].outcomes}
    assert total["append_token_cow copy OutOfBlocks"] >= 5, total
    assert total["append_token_cow new OutOfBlocks"] >= 20, total


def test_scripted_cases_reach_what_they_name() -> None:
    import kvlib.paged.tables as reference

    walk = tables._scripted(reference.append_token_cow, "cow", "t", 4, 16, 3, tables._cow_cases)
    assert walk.outcomes["append_token_cow copy"] == 2  # the two children of p
    walk = tables._scripted(reference.append_token_cow, "cow", "t", 4, 6, 1, tables._cow_exhaustion)
    assert walk.outcomes["append_token_cow copy OutOfBlocks"] == 2
    walk = tables._scripted(reference.fork_table, "fork", "t", 4, 16, 3, tables._fork_cases)
    assert walk.outcomes["fork at a block boundary"] == 2 and walk.outcomes["fork in a block"] == 2


def test_failure_names_the_walk_operation_and_history() -> None:
    source = _edited(
        "append_token", ("position % block_size == 0", "position % block_size == 1 % block_size")
    )
    message = _message("append_token", source)
    assert re.search(r"operation \d+: append_token\(sequence \d+ with \d+ token\(s\) in blocks", message)
    assert "(after " in message and "BlockAllocator(8, 4)" in message
    assert message == _message("append_token", source)  # seeded: the same failure every time


def test_slot_as_float_is_refused() -> None:
    source = _edited("append_token", ("return table.block_ids", "return 1.0 * table.block_ids"))
    assert "use // and %, not /" in _message("append_token", source)


def test_out_of_blocks_turned_into_another_error() -> None:
    source = _edited(
        "append_token",
        (
            "        table.block_ids.extend(allocator.allocate(1))  # raises before anything changed",
            "        if allocator.num_free == 0:\n            raise RuntimeError('full')\n"
            "        table.block_ids.extend(allocator.allocate(1))",
        ),
    )
    assert "expected OutOfBlocks" in _message("append_token", source)


def test_block_ids_rebound_to_a_tuple() -> None:
    source = _edited(
        "append_token",
        (
            "table.tokens.append(token)",
            "table.tokens.append(token)\n    table.block_ids = tuple(table.block_ids)",
        ),
    )
    assert "must stay a list" in _message("append_token", source)


def test_fork_returning_a_dict() -> None:
    source = _edited(
        "fork",
        (
            "return BlockTable(child_id, list(parent.tokens), list(parent.block_ids))",
            "return {'seq_id': child_id, 'tokens': list(parent.tokens), 'block_ids': list(parent.block_ids)}",
        ),
    )
    assert "must return a new BlockTable" in _message("fork", source)


def test_fork_that_changes_its_parent() -> None:
    source = _edited(
        "fork",
        ("    return BlockTable(", "    child_tokens = list(parent.tokens)\n    parent.tokens.clear()\n"
         "    return BlockTable("),
    )  # fmt: skip
    source = source.replace(
        "list(parent.tokens), list(parent.block_ids))", "child_tokens, list(parent.block_ids))"
    )
    assert "fork changed the parent's table" in _message("fork", source)


def test_fork_that_returns_its_parent() -> None:
    source = _edited(
        "fork",
        (
            "return BlockTable(child_id, list(parent.tokens), list(parent.block_ids))",
            "parent.seq_id = child_id\n    return parent",
        ),
    )
    assert "the parent's table itself" in _message("fork", source)


def test_copies_as_lists_are_refused() -> None:
    source = _edited("append_token_cow", ("copies.append((last, fresh))", "copies.append([last, fresh])"))
    assert "each copy is a tuple (src, dst)" in _message("append_token_cow", source)


def test_a_returned_list_reused_by_later_calls() -> None:
    """Values right at each call, but the list the caller kept changes on the next call."""
    source = _edited(
        "append_token_cow",
        ("    copies = []\n", "    copies = _COPIES\n    copies.clear()\n"),
    )
    message = _message("append_token_cow", "_COPIES = []\n\n\n" + source)
    assert "return a new list on each call" in message


def test_a_wrapper_around_kvlibs_plain_append_scores_zero() -> None:
    """append_token_cow that copies itself but lets kvlib's append_token take the new blocks."""
    source = _edited(
        "append_token_cow",
        (
            "        table.block_ids.extend(allocator.allocate(1))\n",
            "        return [] if append(table, token, allocator) is None else []\n",
        ),
    )
    message = _message(
        "append_token_cow", "from kvlib.paged.tables import append_token as append\n\n" + source
    )
    assert "delegates to kvlib" in message and "append_token" in message
