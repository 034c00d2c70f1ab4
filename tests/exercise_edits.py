"""Wrong versions of a notebook's solutions for the chapter tests (tests/test_chNN_*.py).

A chapter test takes the instructor's solution cell, changes a line or two the way a learner would, and
asserts that the hidden checks fail with the message that names the mistake: that is how a grader's
diagnosis is tested where no mutant in autograder/mutants/ reaches it. This module is the one home of
both halves, so every chapter edits and grades the same way.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from autograder.harness import run_exercise, solution_sources


def edited_solution(notebook: Path, grade_id: str, *edits: tuple[str, str]) -> str:
    """The solution cell of ``grade_id`` without its BEGIN/END markers, each ``(old, new)`` applied once
    (``old`` must occur exactly once, so an edit never lands somewhere unintended)."""
    source = re.sub(r"^ *### (BEGIN|END) SOLUTION\n", "", solution_sources(notebook)[grade_id], flags=re.M)
    for old, new in edits:
        assert source.count(old) == 1, old
        source = source.replace(old, new)
    return source


def failure_message(notebook: Path, grade_id: str, source: str) -> str:
    """The message of the CheckFailed that ``source`` (a whole solution cell) gets from the test cell."""
    with pytest.raises(AssertionError) as info:
        run_exercise(notebook, grade_id, source)
    assert type(info.value).__name__ == "CheckFailed", repr(info.value)
    return str(info.value)
