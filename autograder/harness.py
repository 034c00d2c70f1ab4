"""What a test cell imports: a fresh copy of a chapter's checks, with patched functions restored.

Test cells run in the learner's kernel, after the learner's code. A learner (or a careless
helper cell) may have replaced `torch.allclose`, a check helper or `builtins.__import__`.
`fresh("ch01")` therefore drops every cached `autograder.checks` module, restores the torch and
builtins functions snapshotted by `autograder._guard` (imported by the grader before any learner
code runs, or here as a fallback), and imports the chapter's checks again from disk.
"""

from __future__ import annotations

import ast
import functools
import importlib
import re
import sys
from pathlib import Path
from types import ModuleType


def fresh(chapter: str) -> ModuleType:
    """Return `autograder.checks.<chapter>` re-imported from disk after undoing monkeypatches."""
    for name in [m for m in sys.modules if m.startswith("autograder.checks")]:
        del sys.modules[name]
    guard = sys.modules.get("autograder._guard") or importlib.import_module("autograder._guard")
    guard.restore()
    return importlib.import_module(f"autograder.checks.{chapter}")


# ---------------------------------------------------------------------------------------------
# In-process grading of one exercise, for the test suite (no kernel): the same test cell source
# the grader runs, in a namespace holding what the notebook's setup cells import.
# ---------------------------------------------------------------------------------------------

SOLUTION_MARKERS = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$\n?", flags=re.M)


def _code_cells(notebook: Path) -> tuple:
    """The notebook's code cells, read (and validated, about 0.1 s) once per file version."""
    path = Path(notebook).resolve()
    return _read_code_cells(str(path), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _read_code_cells(path: str, mtime_ns: int) -> tuple:
    from . import notebook as nbk

    return tuple(c for c in nbk.read(Path(path)).cells if c.cell_type == "code")


def solution_sources(notebook: Path) -> dict[str, str]:
    """grade_id -> the instructor's solution source, markers stripped, in notebook order."""
    from . import notebook as nbk

    return {
        nbk.grade_id(c): SOLUTION_MARKERS.sub("", c.source)
        for c in _code_cells(notebook)
        if nbk.is_solution(c)
    }


def grading_cell_source(notebook: Path, grade_id: str) -> str:
    """The instructor's test cell of exercise `grade_id` (hidden tests included)."""
    from . import notebook as nbk

    for cell in _code_cells(notebook):
        if nbk.grade_id(cell) == f"{grade_id}_test":
            return cell.source
    raise KeyError(f"{notebook.name} has no test cell {grade_id}_test")


def _setup_definitions(source: str) -> list[str]:
    """The imports and def/class statements of a setup cell (not its slow computations)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    keep = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)
    return [ast.get_source_segment(source, n) or "" for n in tree.body if isinstance(n, keep)]


def namespace_before(notebook: Path, grade_id: str) -> dict:
    """What a learner's solution cell sees: setup imports/definitions and the earlier exercises' solutions."""
    from . import notebook as nbk

    namespace: dict = {"__name__": "__main__"}
    for cell in _code_cells(notebook):
        gid = nbk.grade_id(cell)
        if gid == grade_id:
            return namespace
        if nbk.is_solution(cell):
            exec(compile(SOLUTION_MARKERS.sub("", cell.source), f"<cell {gid}>", "exec"), namespace)  # noqa: S102
        elif not nbk.is_test(cell) and not nbk.is_display_only(cell):  # the grader skips display-only cells
            for statement in _setup_definitions(cell.source):
                try:  # a definition whose defaults need a computed setup value is not needed by exercises
                    exec(compile(statement, f"<setup before {grade_id}>", "exec"), namespace)  # noqa: S102
                except NameError:
                    pass
    raise KeyError(f"{notebook.name} has no exercise {grade_id}")


def run_exercise(notebook: Path, grade_id: str, source: str | None = None) -> dict:
    """Define `source` (default: the instructor's solution) as the solution cell, then run the test cell.

    Raises what the test cell raises (a CheckFailed from the checks); returns the namespace.
    """
    import torch

    namespace = namespace_before(notebook, grade_id)
    code = solution_sources(notebook)[grade_id] if source is None else source
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is faster and steadier on a shared machine
    try:
        exec(compile(code, f"<cell {grade_id}>", "exec"), namespace)  # noqa: S102 - solution or mutant
        exec(compile(grading_cell_source(notebook, grade_id), f"<test {grade_id}>", "exec"), namespace)  # noqa: S102
    finally:
        torch.set_num_threads(threads)
    return namespace
