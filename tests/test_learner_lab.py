"""The learner's lab: Run All goes past unsolved exercises, and `make lab` shows no instructor menus.

Released notebooks tag every solution and test cell `raises-exception` (autograder/release.py), the
tag JupyterLab's Run All and nbclient honour: the cell's error is shown and the run goes on. Here
nbclient runs each released notebook as Run All would: it stops at the first error in an untagged
cell, so reaching the last cell proves every fixed cell copes with unsolved exercises.

`make lab` puts a learner-only config folder first on JUPYTER_CONFIG_PATH that turns nbgrader's
JupyterLab plugins and server extensions off (autograder/labsettings.py); the environment keeps
them, so `jupyter lab` in an instructor's course folder has the formgrader.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import nbformat
import pytest
from conftest import COURSE, REPO
from nbclient import NotebookClient

from autograder import labsettings
from autograder import notebook as nbk
from autograder.notebook import RAISES_EXCEPTION, tag_exercise_cells

NBGRADER_LABEXTENSION = REPO / ".venv" / "share" / "jupyter" / "labextensions" / "@jupyter" / "nbgrader"


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


# ---------------------------------------------------------------- no instructor menus for learners


def installed_nbgrader_plugin_ids() -> set[str]:
    """The JupyterLab plugin ids that the installed @jupyter/nbgrader bundle declares."""
    ids = set()
    for script in (NBGRADER_LABEXTENSION / "static").glob("*.js"):
        ids |= set(re.findall(r'"(@jupyter/nbgrader:[a-z][a-z-]*)"', script.read_text(errors="replace")))
    return ids


def test_learner_config_disables_every_installed_nbgrader_plugin():
    if not NBGRADER_LABEXTENSION.is_dir():
        pytest.skip("nbgrader's JupyterLab extension is not installed in .venv")
    installed = installed_nbgrader_plugin_ids()
    assert "@jupyter/nbgrader:formgrader" in installed and "@jupyter/nbgrader:create-assignment" in installed
    # A new plugin in an nbgrader upgrade must be looked at (learner or instructor?) before it ships.
    listed = set(labsettings.NBGRADER_LAB_PLUGINS)
    assert installed == listed, f"installed but not listed: {installed - listed}; gone: {listed - installed}"


def test_learner_config_files(tmp_path):
    folder = labsettings.write_learner_config(tmp_path / "learner")
    page = json.loads((folder / "labconfig" / "page_config.json").read_text())
    assert page == {"disabledExtensions": {plugin: True for plugin in labsettings.NBGRADER_LAB_PLUGINS}}
    server = json.loads((folder / "jupyter_server_config.json").read_text())
    extensions = server["ServerApp"]["jpserver_extensions"]
    assert extensions == {name: False for name in labsettings.NBGRADER_SERVER_EXTENSIONS}
    installed = json.loads(
        (REPO / ".venv" / "etc" / "jupyter" / "jupyter_server_config.d" / "nbgrader.json").read_text()
    )["ServerApp"]["jpserver_extensions"]
    assert set(installed) == set(extensions), "nbgrader's server extensions changed"
    labsettings.write_learner_config(folder)  # a second `make lab` rewrites it in place
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="file"):
        labsettings.write_learner_config(tmp_path / "file")


def test_make_lab_uses_the_learner_config_folder():
    dry_run = subprocess.run(
        ["make", "--no-print-directory", "-n", "lab"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    folder = str(Path(REPO / ".venv" / "etc" / "kvcourse-learner"))
    assert f"-m autograder.labsettings --learner {folder}" in dry_run
    assert f'JUPYTER_CONFIG_PATH="{folder}' in dry_run
