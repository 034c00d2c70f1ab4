"""Every instructor notebook executes top to bottom on the CPU within its time budget."""

from __future__ import annotations

import time

import nbformat
import pytest
from conftest import SOLUTIONS, solution_notebooks
from nbclient import NotebookClient

from autograder.notebook import budget_seconds

pytestmark = [pytest.mark.notebooks, pytest.mark.slow]


@pytest.mark.parametrize("path", solution_notebooks(), ids=lambda p: p.stem)
def test_solution_notebook_executes_within_budget(path):
    nb = nbformat.read(path, as_version=4)
    budget = budget_seconds(nb)
    client = NotebookClient(
        nb, timeout=int(budget), kernel_name="python3", resources={"metadata": {"path": SOLUTIONS}}
    )
    started = time.monotonic()
    client.execute()
    seconds = time.monotonic() - started
    print(f"\n{path.name}: executed in {seconds:.1f} s (budget {budget:.0f} s)")
    assert seconds <= budget, f"{path.name} took {seconds:.1f} s, over its {budget:.0f} s budget"
