"""Chapter 03, beyond what tests/test_checks.py runs for every exercise: other correct ways to write
each exercise pass (a spec read literally never fails a right answer), and the optional MLA bonus can
be skipped without breaking the notebook or the self-check.
"""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat
import pytest

from autograder import notebook as nbk
from autograder.grading import check_notebook

pytestmark = [pytest.mark.ch03, pytest.mark.autograder]

NOTEBOOK = Path(__file__).resolve().parents[1] / "solutions" / "03_gqa.ipynb"

def test_skipping_the_mla_bonus_costs_its_points_only(tmp_path: Path) -> None:
    """Run All and the self-check work with the bonus left as released: the later cell uses the reference."""
    learner = nbk.with_fixed_cell_ids(copy.deepcopy(nbformat.read(NOTEBOOK, as_version=4)))
    (bonus,) = [c for c in learner.cells if nbk.grade_id(c) == "expand_latent"]
    bonus.source = "def expand_latent(c_kv, w_uk, w_uv, n_heads):\n    raise NotImplementedError()\n"
    path = tmp_path / NOTEBOOK.name
    nbformat.write(learner, path)

    report = check_notebook(path, NOTEBOOK)

    assert report.setup_errors == []
    scores = {e.grade_id: e for e in report.exercises}
    assert scores["expand_latent"].score == 0
    assert "not implemented yet" in scores["expand_latent"].message
    assert report.score == report.max_score - scores["expand_latent"].max_score == 11
