"""Reading course notebooks: nbgrader metadata, exercises, and the cells a grading run executes.

Vocabulary: an *exercise* is a solution cell (`grade_id` X, nbgrader `solution`) followed by its
locked test cell (`grade_id` X_test, nbgrader `grade` with points). Every other code cell is a
*fixed* cell: the grader always runs the instructor's version of it.
"""

from __future__ import annotations

import hashlib
import io
import json
import tokenize
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat import NotebookNode

DEFAULT_BUDGET_S = 120
# The cell tag JupyterLab's Run All and nbclient honour: an error in the cell is shown, and the run goes on.
RAISES_EXCEPTION = "raises-exception"


class NotebookError(Exception):
    """A notebook file that cannot be graded (unreadable, malformed, or not one of ours)."""


class WrongNotebook(NotebookError):
    """A readable notebook that is not the chapter its name says (no exercise cell of it)."""


@dataclass(frozen=True)
class Exercise:
    solution_id: str
    test_id: str
    points: float


def read(path: Path) -> NotebookNode:
    """Read a notebook, with an error that names the file when it is not valid .ipynb JSON."""
    path = Path(path)
    if path.is_dir():
        raise NotebookError(f"{path}: is a folder, expected a .ipynb notebook file")
    try:
        nb = nbformat.read(path, as_version=4)
    except FileNotFoundError:
        raise NotebookError(f"{path}: no such notebook") from None
    except (json.JSONDecodeError, nbformat.reader.NotJSONError, UnicodeDecodeError) as exc:
        raise NotebookError(
            f"{path}: not a valid .ipynb file (is it truncated?): {_first_line(exc)}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - nbformat raises many kinds for broken files
        raise NotebookError(f"{path}: is not a Jupyter notebook: {_first_line(exc)}") from None
    if not isinstance(nb.get("cells"), list):
        raise NotebookError(f"{path}: is not a Jupyter notebook: it has no list of cells")
    try:  # JSON that nbformat reads can still lack what grading uses (a cell's source, its metadata)
        nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        raise NotebookError(f"{path}: is not a valid Jupyter notebook: {_first_line(exc.message)}") from None
    return nb


def _first_line(error: object) -> str:
    """Error messages stay one line: nbformat's and jsonschema's run to several."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def nbgrader_meta(cell: NotebookNode) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def grade_id(cell: NotebookNode) -> str | None:
    return nbgrader_meta(cell).get("grade_id")


def is_solution(cell: NotebookNode) -> bool:
    return cell.cell_type == "code" and bool(nbgrader_meta(cell).get("solution"))


def is_test(cell: NotebookNode) -> bool:
    meta = nbgrader_meta(cell)
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


def is_display_only(cell: NotebookNode) -> bool:
    """A fixed cell that only shows a measurement or a figure (metadata ``kvlib.display_only``).

    No test depends on what it defines, so grading skips it: timing loops and plots are most of a
    notebook's run time, and a self-check should not wait for them. The solutions' full-marks test
    (with no failing setup cell) proves the marks are right.
    """
    return cell.cell_type == "code" and bool(cell.get("metadata", {}).get("kvlib", {}).get("display_only"))


def exercises(nb: NotebookNode) -> list[Exercise]:
    """The exercises of an instructor notebook, in order, with the points of their test cells."""
    found = []
    cells = nb.cells
    for i, cell in enumerate(cells):
        if not is_solution(cell):
            continue
        sid = grade_id(cell)
        test = next((c for c in cells[i + 1 :] if c.cell_type == "code"), None)
        if test is None or not is_test(test) or grade_id(test) != f"{sid}_test":
            raise NotebookError(f"solution cell {sid!r} must be followed by its test cell {sid + '_test'!r}")
        found.append(Exercise(sid, grade_id(test), float(nbgrader_meta(test).get("points", 0))))
    return found


def missing_exercises(instructor: NotebookNode, learner: NotebookNode) -> list[str]:
    """The instructor's exercise ``grade_id``s that no solution cell of ``learner`` carries, in order."""
    present = {grade_id(c) for c in learner.cells if is_solution(c)}
    return [e.solution_id for e in exercises(instructor) if e.solution_id not in present]


def budget_seconds(nb: NotebookNode) -> float:
    return float(nb.metadata.get("kvlib", {}).get("budget_s", DEFAULT_BUDGET_S))


def with_fixed_cell_ids(nb: NotebookNode) -> NotebookNode:
    """Give every untagged code cell a locked, read-only nbgrader identity (in place, returned).

    nbgrader only restores cells it can identify, so setup cells get a stable `grade_id` derived
    from their source: the release carries it to learners, and the grader uses it to run the
    instructor's version even if a learner edited or deleted the cell.
    """
    seen: dict[str, int] = {}
    for cell in nb.cells:
        if cell.cell_type != "code" or grade_id(cell):
            continue
        digest = hashlib.sha1(cell.source.encode()).hexdigest()[:8]
        seen[digest] = seen.get(digest, 0) + 1
        suffix = "" if seen[digest] == 1 else f"_{seen[digest]}"
        cell.metadata["nbgrader"] = {
            "grade": False,
            "solution": False,
            "locked": True,
            "grade_id": f"fixed_{digest}{suffix}",
            "schema_version": 3,
        }
    return nb


def tag_exercise_cells(nb: NotebookNode) -> NotebookNode:
    """Tag every solution and test cell ``raises-exception``, so Run All goes past unsolved exercises.

    A released test cell raises until the learner solves its exercise; without the tag, Run All in
    JupyterLab (and nbclient) stops there and no later figure or widget appears. Grading is not
    affected: it runs cells itself and scores a test cell by whether it raised. Only the released
    copies are tagged (nbgrader's generate_assignment does it, see nbgrader_grading.TagRunAll): the
    solutions must still fail loudly when a test cell raises.
    """
    for cell in nb.cells:
        if is_solution(cell) or is_test(cell):
            tags = cell.metadata.setdefault("tags", [])
            if RAISES_EXCEPTION not in tags:
                tags.append(RAISES_EXCEPTION)
    return nb


def names_used(source: str) -> set[str]:
    """Every identifier and string literal in `source` (for rules like 'do not call kvlib')."""
    found: set[str] = set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type in (tokenize.NAME, tokenize.STRING):
                found.add(tok.string)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        found.update(source.split())
    return found


def mentions_reference_library(source: str) -> bool:
    """True when a solution cell imports or names kvlib (learners must write their own code)."""
    return any("kvlib" in name for name in names_used(source))


def grading_cells(
    instructor: NotebookNode, learner: NotebookNode, markdown: bool = False
) -> list[tuple[str, NotebookNode]]:
    """The code cells to execute, tagged 'fixed', 'solution', 'test' or 'extra'.

    Instructor order and instructor sources for every fixed and test cell (edited or deleted
    test cells are restored, as nbgrader does; display-only cells are skipped, see
    :func:`is_display_only`); the learner's source for each solution cell
    (the released stub if they deleted it); the learner's own untagged cells kept, each after
    the last tagged cell that precedes it in their notebook. With ``markdown``, the instructor's
    markdown cells come along in place, tagged 'markdown' (not run: they make a graded notebook
    readable).
    """
    learner_solutions = {grade_id(c): c for c in learner.cells if is_solution(c) and grade_id(c)}
    known_ids = {grade_id(c) for c in instructor.cells if grade_id(c)}
    extras_after: dict[str | None, list[NotebookNode]] = {}
    anchor = None
    for cell in learner.cells:
        gid = grade_id(cell)
        if gid in known_ids:
            anchor = gid
        elif cell.cell_type == "code" and not gid and cell.source.strip():
            extras_after.setdefault(anchor, []).append(cell)

    plan: list[tuple[str, NotebookNode]] = [("extra", c) for c in extras_after.get(None, [])]
    for cell in instructor.cells:
        if cell.cell_type == "markdown" and markdown:
            plan.append(("markdown", cell))
        if cell.cell_type != "code":
            continue
        gid = grade_id(cell)
        if is_solution(cell):
            stub = nbformat.v4.new_code_cell("raise NotImplementedError()", metadata=cell.metadata)
            plan.append(("solution", learner_solutions.get(gid, stub)))
        elif is_test(cell):
            plan.append(("test", cell))
        elif not is_display_only(cell):
            plan.append(("fixed", cell))
        plan.extend(("extra", c) for c in extras_after.get(gid, []))
    return plan
