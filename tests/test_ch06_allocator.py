"""Chapter 06's block_allocator checks, beyond what tests/test_checks.py runs for every exercise.

The hidden check replays seeded random walks; these tests hold the walks to what the docstring needs
(every refusal and every kind of block comes up in them), and check the parts of the grader that no
mutant in autograder/mutants/ reaches: a caller changing a returned list, a result of the wrong type,
a wrapper around kvlib's block manager, and the wording of a failure (operation number and history).
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
from exercise_edits import edited_solution, failure_message

from autograder.checks.ch06 import allocator
from autograder.harness import namespace_before, solution_sources

pytestmark = [pytest.mark.ch06, pytest.mark.autograder]

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "solutions" / "06_paged.ipynb"


def _solution() -> str:
    return solution_sources(NOTEBOOK)["block_allocator"]


def _edited(*edits: tuple[str, str]) -> str:
    return edited_solution(NOTEBOOK, "block_allocator", *edits)


def _message(source: str) -> str:
    return failure_message(NOTEBOOK, "block_allocator", source)


def _outcomes(num_blocks: int, steps: int, seed: int) -> Counter:
    """(operation, state of its block, outcome) for one random walk, replayed on kvlib alone."""
    from kvlib.paged.blocks import BlockAllocator

    rng, ref, seen = random.Random(seed), BlockAllocator(num_blocks, 16), Counter()
    for _ in range(steps):
        op, arg = allocator._random_op(rng, ref)
        if op == "allocate":
            kind = "negative" if arg < 0 else "zero" if arg == 0 else "all" if arg == ref.num_free else "some"
        elif not 0 <= arg < num_blocks:
            kind = "below" if arg < 0 else "above"
        else:
            kind = "free" if ref.is_free(arg) else "used" if ref.ref_count(arg) else "idle"
        try:
            getattr(ref, op)(arg)
            seen[op, kind, "ok"] += 1
        except Exception as exc:  # noqa: BLE001 - the outcome is what is counted
            seen[op, kind, type(exc).__name__] += 1
    return seen


def test_hidden_walks_reach_every_outcome_the_docstring_names() -> None:
    seen: Counter = Counter()
    for num_blocks, steps, seed in allocator.HIDDEN_WALKS:
        seen.update(_outcomes(num_blocks, steps, seed))
    needed = [
        ("allocate", "some", "ok"), ("allocate", "all", "ok"), ("allocate", "zero", "ok"),
        ("allocate", "some", "OutOfBlocks"), ("allocate", "negative", "ValueError"),
        ("incref", "used", "ok"), ("incref", "idle", "ok"), ("incref", "free", "ValueError"),
        ("decref", "used", "ok"), ("decref", "idle", "ValueError"), ("decref", "free", "ValueError"),
        ("release", "idle", "ok"), ("release", "used", "ValueError"), ("release", "free", "ValueError"),
        *((op, side, "IndexError") for op in ("incref", "decref", "release", "ref_count")
          for side in ("below", "above")),
    ]  # fmt: skip
    rare = {key: seen[key] for key in needed if seen[key] < 5}
    assert not rare, f"outcomes the hidden walks reach fewer than 5 times: {rare}"


def test_a_caller_changing_a_returned_list_must_not_change_the_allocator() -> None:
    """An allocator that counts its used blocks from the lists it handed out (so they alias its state)."""
    source = _edited(
        ("        self.free_set = set(self.free_list)\n",
         "        self.free_set = set(self.free_list)\n"
         "        self.handed = []\n"
         "        self.returned = 0\n"),
        ("        return len(self.free_list)\n",
         "        return self.num_blocks - sum(len(ids) for ids in self.handed) + self.returned\n"),
        ("        return ids\n", "        self.handed.append(ids)\n        return ids\n"),
        ("        self.free_list.append(block_id)\n",
         "        self.free_list.append(block_id)\n        self.returned += 1\n"),
    )  # fmt: skip
    message = _message(source)
    assert "no aliasing" in message and "appended 7" in message, message


def test_a_tuple_of_ids_fails_asking_for_a_list() -> None:
    message = _message(_edited(("        return ids\n", "        return tuple(ids)\n")))
    assert "must return a list of block ids, got tuple" in message, message


def test_a_wrapper_around_kvlibs_block_manager_scores_zero() -> None:
    source = (
        "from kvlib.paged import BlockManager\n\n"
        "class BlockAllocator:\n"
        "    def __init__(self, num_blocks, block_size):\n"
        "        self._inner = BlockManager(num_blocks=num_blocks, block_size=block_size).allocator\n"
        "    def __getattr__(self, name):\n"
        "        return getattr(self._inner, name)\n"
    )
    assert "delegates to kvlib" in _message(source)


def test_a_failure_names_the_operation_its_history_and_the_mistake() -> None:
    lifo = _edited(
        ("        self.free_list.append(block_id)\n", "        self.free_list.insert(0, block_id)\n")
    )
    message = _message(lifo)
    assert message.startswith(
        "a = BlockAllocator(4, 16), operation 9: allocate(1) (after 3 earlier operation(s), then "
    )
    assert "returned [0], expected [3]" in message and "first-in, first-out" in message, message


def test_the_hidden_check_is_deterministic() -> None:
    lifo = _edited(
        ("        self.free_list.append(block_id)\n", "        self.free_list.insert(0, block_id)\n")
    )
    namespace = namespace_before(NOTEBOOK, "block_allocator")
    exec(compile(lifo, "<cell block_allocator>", "exec"), namespace)  # noqa: S102 - a learner's cell
    messages = set()
    for _ in range(2):
        with pytest.raises(AssertionError) as info:
            allocator.block_allocator_hidden(namespace["BlockAllocator"])
        messages.add(str(info.value))
    assert len(messages) == 1, messages
