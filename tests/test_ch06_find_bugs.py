"""Chapter 06's find-the-bug exercise (`expose_bugs`), beyond what tests/test_checks.py runs for every
exercise: odd answers fail with a message instead of crashing the check, each letter is judged and
reported on its own, the visible check gives nothing away, and running kvlib's harness inside the graded
function scores 0.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from exercise_edits import failure_message

from autograder.checks.ch06 import find_bugs
from autograder.harness import run_exercise, solution_sources

pytestmark = [pytest.mark.ch06, pytest.mark.autograder]

NOTEBOOK = Path(__file__).resolve().parents[1] / "solutions" / "06_paged.ipynb"

ENTRIES = {
    "A": '([("allocate", 0, [1, 2, 3, 4]), ("free", 0), ("allocate", 1, [1, 2, 3, 4])], '
    '"registered_blocks_cached")',
    "B": '([("allocate", 0, [1]), ("fork", 0, 1), ("append", 0, 2), ("append", 1, 3)], "reads_own_tokens")',
    "C": '([("allocate", 0, [1])], "cached_blocks_full")',
    "D": '([("allocate", 0, [1, 2, 3, 4]), ("free", 0), ("reclaim", 1)], "block_states")',
    "E": '([("allocate", 0, [1, 2, 3]), ("allocate", 1, [1, 2, 3])], "one_block_per_prefix")',
}


def _source(body: str) -> str:
    return f"def expose_bugs():\n    return {body}\n"


def _answer(**changes: str) -> str:
    entries = {**ENTRIES, **changes}
    return _source("{" + ", ".join(f"{k!r}: {v}" for k, v in entries.items() if v) + "}")


def _fails_with(source: str) -> str:
    return failure_message(NOTEBOOK, "expose_bugs", source)


def test_the_table_here_is_the_solution() -> None:
    run_exercise(NOTEBOOK, "expose_bugs", _answer())


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("None", "must return a dict"),
        ("[]", "must return a dict"),
        ("{1: ([], 'ref_counts')}", "the keys are the letters"),
        ("{'F': ([('allocate', 0, [1])], 'ref_counts')}", "not one of the manager letters"),
        (
            "{'a': ([('allocate', 0, [1])], 'ref_counts'), 'A': ([('allocate', 0, [1])], 'ref_counts')}",
            "twice",
        ),
    ],
)
def test_odd_answers_fail_with_a_message(body: str, words: str) -> None:
    assert words in _fails_with(_source(body))


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("[('allocate', 0, [1])]", "must be a pair"),
        ("([('allocate', 0, [1])], 'cached_blocks_full', 3)", "must be a pair"),
        ("([], 'cached_blocks_full')", "the sequence is empty"),
        ("([('allocate', 0, [1])], 'partial block')", "one of the names in INVARIANTS"),
        ("([('allocate', 0, [1])], 3)", "one of the names in INVARIANTS"),
        ("('allocate', 'cached_blocks_full')", "ops must be a list of operation tuples"),
        ("(['allocate'], 'cached_blocks_full')", "ops[0] must be a tuple"),
        ("([('allocate', 0, 1)], 'cached_blocks_full')", "prompt"),
        ("([('allocate', 0, [1])], None)", "one of the names in INVARIANTS"),
    ],
)
def test_odd_entries_fail_naming_the_letter(entry: str, words: str) -> None:
    message = _fails_with(_answer(C=entry))
    assert "expose_bugs()['C']" in message and words in message, message


def test_each_letter_is_reported_and_a_partial_answer_fails_listing_the_rest(capsys) -> None:
    wrong = '([("allocate", 0, [1, 2, 3, 4]), ("allocate", 1, [1, 2, 3, 4])], "registered_blocks_cached")'
    message = _fails_with(_answer(A=wrong, E=ENTRIES["D"].replace("block_states", "one_block_per_prefix")))
    assert "3 of 5 bugs exposed" in message
    assert message.count("\nA: ") == 1 and message.count("\nE: ") == 1
    out = capsys.readouterr().out
    for letter in "BCD":
        assert f"  {letter}: exposed" in out
    assert "  A: not yet" in out and "  E: not yet" in out
    assert "shortest 4" in out


def test_the_visible_check_passes_a_valid_answer_that_exposes_nothing(capsys) -> None:
    quiet = '([("allocate", 0, [1, 2, 3])], "ref_counts")'
    source = _answer(**{c: quiet for c in "ABDE"})
    namespace: dict = {}
    exec(source, namespace)  # the learner's cell, run as the notebook would
    find_bugs.expose_bugs_visible(namespace["expose_bugs"])
    assert "visible tests passed" in capsys.readouterr().out
    assert "does not expose manager A" in _fails_with(source)


def test_the_visible_check_already_refuses_an_invalid_or_too_long_sequence() -> None:
    namespace: dict = {}
    too_long = '([("allocate", 0, [1, 2, 3])] + [("append", 0, 1)] * 3, "cached_blocks_full")'
    exec(_answer(C=too_long), namespace)
    with pytest.raises(AssertionError, match="at most 3 are accepted"):
        find_bugs.expose_bugs_visible(namespace["expose_bugs"])


def test_a_different_answer_on_each_call_fails() -> None:
    source = "import random\n\n" + _answer(
        C='([("allocate", random.randint(0, 10**9), [1])], "cached_blocks_full")'
    )
    assert "different answer on a second call" in _fails_with(source)


def test_a_pair_reversed_by_letter_names_the_order() -> None:
    assert "the ops come first" in _fails_with(_answer(C='("cached_blocks_full", [("allocate", 0, [1])])'))


def test_running_kvlibs_harness_inside_the_graded_function_scores_zero() -> None:
    source = (
        "from kvlib.paged.bugs import run_ops, BUGGY_MANAGERS\n\n"
        "def expose_bugs():\n"
        f"    answer = {{{', '.join(f'{k!r}: {v}' for k, v in ENTRIES.items())}}}\n"
        "    for letter, (ops, name) in answer.items():\n"
        "        assert run_ops(BUGGY_MANAGERS[letter], ops).violation[1] == name\n"
        "    return answer\n"
    )
    assert "delegates to kvlib" in _fails_with(source)


def test_an_answer_that_only_uses_the_buggy_managers_directly_is_fine() -> None:
    """Building a manager to look at it is not kvlib's harness: only run_ops is the reference."""
    source = (
        "from kvlib.paged.bugs import BUGGY_MANAGERS\n\n"
        "def expose_bugs():\n"
        "    assert BUGGY_MANAGERS['C'](8, 3).num_blocks == 8\n"
        f"    return {{{', '.join(f'{k!r}: {v}' for k, v in ENTRIES.items())}}}\n"
    )
    run_exercise(NOTEBOOK, "expose_bugs", source)


def test_the_solution_grades_in_well_under_three_seconds() -> None:
    solution = solution_sources(NOTEBOOK)["expose_bugs"]
    run_exercise(NOTEBOOK, "expose_bugs", solution)  # warm imports
    started = time.perf_counter()
    run_exercise(NOTEBOOK, "expose_bugs", solution)
    assert time.perf_counter() - started < 3
