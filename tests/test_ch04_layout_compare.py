"""Chapter 04's layout_errors and compare_rows checks, beyond what tests/test_checks.py runs for every
exercise: answers that are right in value but wrong in kind, and mistakes that only show on the
error path (a KeyError that leaves the table changed, a column name that does not exist).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from exercise_edits import failure_message

from autograder.harness import solution_sources

pytestmark = [pytest.mark.ch04, pytest.mark.autograder]

NOTEBOOK = Path(__file__).resolve().parents[1] / "solutions" / "04_quantization.ipynb"


def _message(grade_id: str, source: str) -> str:
    return failure_message(NOTEBOOK, grade_id, source)


def _solution_with(grade_id: str, old: str, new: str) -> str:
    source = solution_sources(NOTEBOOK)[grade_id]
    assert old in source
    return source.replace(old, new)


def test_layout_errors_numpy_float32_is_not_a_python_float() -> None:
    source = _solution_with("layout_errors", ").item()", ").numpy()[()]")  # a numpy.float32 scalar
    assert "must be a python float, got float32" in _message("layout_errors", source).lower()


def test_layout_errors_other_key_names_are_named() -> None:
    source = _solution_with("layout_errors", '"per_token":', '"token":')
    assert "missing the keys ['per_token']" in _message("layout_errors", source)


def test_compare_rows_keyerror_that_inserts_the_missing_row_still_fails() -> None:
    """setdefault raises the KeyError a moment later, but the caller's table has gained a row."""
    source = _solution_with(
        "compare_rows",
        "row_a, row_b = table[a], table[b]",
        "row_a, row_b = table[a], table.setdefault(b, {})",
    )
    assert "modified the table" in _message("compare_rows", source)


def test_compare_rows_unknown_column_names_the_columns() -> None:
    source = _solution_with("compare_rows", 'row_b["bytes_per_token"]', 'row_b["bytes"]')
    message = _message("compare_rows", source)
    assert "KeyError" in message and "the columns are bytes_per_token" in message


def test_compare_rows_extra_keys_fail() -> None:
    source = _solution_with(
        "compare_rows", "    return {\n", '    return {\n        "rows": f"{a} -> {b}",\n'
    )
    assert "must return exactly three keys" in _message("compare_rows", source)
