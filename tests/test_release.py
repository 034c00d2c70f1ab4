"""course/ is generated from solutions/ (in sync, deterministic) and every notebook is well formed."""

from __future__ import annotations

import nbformat
import pytest
from conftest import COURSE, solution_notebooks

from autograder import notebook as nbk
from autograder.release import release

pytestmark = pytest.mark.autograder


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    out = tmp_path_factory.mktemp("course")
    release(out)
    return out


def test_course_is_in_sync_with_solutions(regenerated):
    expected = sorted(p.name for p in regenerated.glob("*.ipynb"))
    assert expected == sorted(p.name for p in COURSE.glob("*.ipynb")), "run `python -m autograder release`"
    for name in expected:
        assert (regenerated / name).read_bytes() == (COURSE / name).read_bytes(), (
            f"course/{name} differs from a fresh release: run `python -m autograder release`"
        )


def test_release_is_deterministic(regenerated, tmp_path):
    release(tmp_path)
    for path in regenerated.glob("*.ipynb"):
        assert (tmp_path / path.name).read_bytes() == path.read_bytes()


ALL_NOTEBOOKS = solution_notebooks() + sorted(COURSE.glob("*.ipynb"))


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_notebook_hygiene(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name}: committed outputs"
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), (
        f"{path.name}: must start with a title"
    )
    assert "What you will learn" in first.source and "How long it takes" in first.source


@pytest.mark.parametrize("path", solution_notebooks(), ids=lambda p: p.stem)
def test_graded_cells_are_well_formed(path):
    nb = nbk.read(path)
    ids = [nbk.grade_id(c) for c in nb.cells if nbk.grade_id(c)]
    assert len(ids) == len(set(ids)), f"duplicate grade_id in {path.name}"
    exercises = nbk.exercises(nb)
    assert exercises, f"{path.name} has no graded exercise"
    for exercise in exercises:
        assert exercise.points > 0, f"{exercise.test_id} must give positive points"
    for cell in nb.cells:
        if nbk.is_solution(cell):
            assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source
            assert not nbk.mentions_reference_library(cell.source), f"{nbk.grade_id(cell)} mentions kvlib"
        if nbk.is_test(cell):
            assert "### BEGIN HIDDEN TESTS" in cell.source, f"{nbk.grade_id(cell)} has no hidden tests"
        if nbk.is_display_only(cell):  # grading skips it: it must not be part of an exercise
            assert not nbk.is_solution(cell) and not nbk.is_test(cell), cell.source[:60]


@pytest.mark.parametrize("path", sorted(COURSE.glob("*.ipynb")), ids=lambda p: p.stem)
def test_released_solution_cells_raise_not_implemented(path):
    nb = nbk.read(path)
    for cell in nb.cells:
        if nbk.is_solution(cell):
            assert "raise NotImplementedError()" in cell.source
            assert "### BEGIN SOLUTION" not in cell.source
        if nbk.is_test(cell):
            assert "HIDDEN TESTS" not in cell.source, "hidden tests leaked into the release"
