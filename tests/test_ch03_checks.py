"""Chapter 03, beyond what tests/test_checks.py runs for every exercise: the optional MLA bonus can be
skipped without breaking Run All or the self-check.
"""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat
import pytest

from autograder import notebook as nbk
from autograder.grading import check_notebook
from autograder.harness import solution_sources

pytestmark = [pytest.mark.ch03, pytest.mark.autograder]

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "solutions" / "03_gqa.ipynb"


def test_skipping_the_mla_bonus_costs_its_points_only(tmp_path: Path) -> None:
    """Run All and the self-check work with the bonus left as released: the later cell uses the reference."""
    learner = nbk.with_fixed_cell_ids(copy.deepcopy(nbformat.read(NOTEBOOK, as_version=4)))
    (bonus,) = [c for c in learner.cells if nbk.grade_id(c) == "expand_latent"]
    bonus.source = "def expand_latent(c_kv, w_uk, w_uv, num_heads):\n    raise NotImplementedError()\n"
    path = tmp_path / NOTEBOOK.name
    nbformat.write(learner, path)

    report = check_notebook(path, NOTEBOOK)

    assert report.setup_errors == []
    scores = {e.grade_id: e for e in report.exercises}
    assert scores["expand_latent"].score == 0
    assert "not implemented yet" in scores["expand_latent"].message
    assert report.score == report.max_score - scores["expand_latent"].max_score == 11


@pytest.mark.slow
def test_run_all_completes_with_the_bonus_left_as_released(tmp_path: Path) -> None:
    """The released notebook, required exercises done and the bonus untouched, runs top to bottom."""
    from nbclient import NotebookClient

    released = nbformat.read(REPO / "course" / NOTEBOOK.name, as_version=4)
    solutions = solution_sources(NOTEBOOK)
    for cell in released.cells:
        gid = nbk.grade_id(cell)
        if nbk.is_solution(cell) and gid != "expand_latent":
            cell.source = solutions[gid]
    NotebookClient(
        released, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = "".join(
        o.get("text", "") for c in released.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "the optional bonus is not attempted" in outputs
    assert "your expand_latent is not implemented yet" in outputs  # the MLA cell fell back to the reference
