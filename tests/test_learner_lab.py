"""The learner's lab: Run All goes past unsolved exercises.

Released notebooks tag every solution and test cell `raises-exception` (autograder/release.py), the
tag JupyterLab's Run All and nbclient honour: the cell's error is shown and the run goes on. Here
nbclient runs each released notebook as Run All would: it stops at the first error in an untagged
cell, so reaching the last cell proves every fixed cell copes with unsolved exercises.
"""

from __future__ import annotations

import time

import nbformat
import pytest
from conftest import COURSE, REPO
from nbclient import NotebookClient

from autograder import notebook as nbk
from autograder.release import RAISES_EXCEPTION, tag_exercise_cells


def tagged(cell) -> bool:
    return RAISES_EXCEPTION in cell.get("metadata", {}).get("tags", [])


def errors(cell) -> list[str]:
    return [f"{o.ename}: {o.evalue}" for o in cell.get("outputs", []) if o.output_type == "error"]


def printed(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.output_type == "stream")


@pytest.mark.parametrize("path", sorted(COURSE.glob("*.ipynb")), ids=lambda p: p.stem)
def test_released_notebooks_tag_exactly_the_exercise_cells(path):
    nb = nbk.read(path)
    exercise_cells = [c for c in nb.cells if nbk.is_solution(c) or nbk.is_test(c)]
    assert exercise_cells, f"{path.name} has no exercise"
    untagged = [nbk.grade_id(c) for c in exercise_cells if not tagged(c)]
    assert not untagged, (
        f"exercise cells without {RAISES_EXCEPTION!r}: {untagged}: run `python -m autograder release`"
    )
    # A fixed cell must never be tagged: the tag would hide the error a learner needs to see.
    extra = [c.source[:60] for c in nb.cells if tagged(c) and not (nbk.is_solution(c) or nbk.is_test(c))]
    assert not extra, f"fixed cells tagged {RAISES_EXCEPTION!r}: {extra}"


def test_solutions_are_not_tagged():
    """The instructor's notebooks must stop at a failing test cell (tests/test_notebooks.py relies on it)."""
    for path in sorted((REPO / "solutions").glob("*.ipynb")):
        assert not [c for c in nbk.read(path).cells if tagged(c)], f"solutions/{path.name} has tagged cells"


def test_tagging_is_idempotent_and_leaves_other_tags():
    cell = nbformat.v4.new_code_cell("raise NotImplementedError()")
    cell.metadata = {"nbgrader": {"solution": True, "grade": False, "grade_id": "x"}, "tags": ["keep"]}
    fixed = nbformat.v4.new_code_cell("print(1)")
    nb = nbformat.v4.new_notebook(cells=[cell, fixed])
    tag_exercise_cells(tag_exercise_cells(nb))
    assert cell.metadata["tags"] == ["keep", RAISES_EXCEPTION]
    assert "tags" not in fixed.metadata


@pytest.mark.notebooks
@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(COURSE.glob("*.ipynb")), ids=lambda p: p.stem)
def test_run_all_of_a_released_notebook_reaches_its_last_cell(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    # nbclient, like Run All, stops at the first error of an untagged cell (a CellExecutionError here).
    client = NotebookClient(
        nb,
        timeout=int(nbk.budget_seconds(nb)),
        kernel_name="python3",
        resources={"metadata": {"path": COURSE}},
    )
    started = time.monotonic()
    client.execute()
    print(f"\nRun All of course/{path.name}: {time.monotonic() - started:.1f} s")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[-1].execution_count is not None, f"{path.name}: Run All did not reach the last cell"
    assert all(c.execution_count is not None for c in code), f"{path.name}: a cell was skipped"
    for cell in code:
        gid = nbk.grade_id(cell)
        if not tagged(cell):
            assert not errors(cell), f"{path.name}: untagged cell {cell.source[:60]!r} raised {errors(cell)}"
        elif nbk.is_test(cell):
            # Unsolved, every test cell fails with "not implemented" (an optional bonus says it is skipped).
            failed = any("not implemented" in e for e in errors(cell))
            assert failed or "not attempted" in printed(cell), (
                f"{path.name}: test cell {gid} passed unsolved: {errors(cell) or printed(cell)}"
            )
        else:  # a released solution cell only defines a stub: defining it must work
            assert not errors(cell), f"{path.name}: solution cell {gid} raised {errors(cell)}"
