"""nbgrader's autograde, graded by the self-check's engine: the same cells, kernel and messages.

The course folder's ``nbgrader_config.py`` (written by ``python -m autograder instructor``) puts
:class:`GradeLikeCheck` in place of nbgrader's ``Execute`` in the autograde pipeline and
:class:`HideTestSource` in the feedback pipeline. So ``nbgrader autograde``, the formgrader's
autograde button and ``python -m autograder grade`` all score a submission exactly as
``python -m autograder check`` does:

- the cells that run are the check's plan (:func:`notebook.grading_cells`): the instructor's setup
  and test cells in the instructor's order, so a deleted or edited test or setup cell is restored,
  not scored 0 (nbgrader alone restores edited cells but leaves deleted ones out);
- they run in the memory-capped grading kernel, with the per-cell timeout, the guard against
  monkeypatching and the rebuild after a crash (:func:`grading.grade`), not in nbclient;
- a failed test cell gets one error output whose text is the check's message, which nbgrader's
  ``SaveAutoGrades`` scores 0; a passing one gets no error, no stderr and no ``execute_result``
  (nbgrader would read a number there as partial credit), so it scores full points.

The grading kernel is started by our own code (a private kernelspec per run), so nbgrader needs no
kernel installed and no ``JUPYTER_PATH``.
"""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat
from nbformat import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Integer

from . import notebook as nbk
from .grading import CellRun, failure_message, grade, solution_problem

# What nbgrader's feedback shows where a test cell's hidden region was.
HIDDEN_TESTS_NOTE = "# (hidden tests: not shown)"


def source_notebook(config, assignment: str, notebook: str) -> Path:
    """The instructor notebook nbgrader generated the assignment from: source/<assignment>/<nb>.ipynb."""
    from nbgrader.coursedir import CourseDirectory

    coursedir = CourseDirectory(config=config)
    return Path(coursedir.format_path(coursedir.source_directory, ".", assignment)) / f"{notebook}.ipynb"


def error_output(ename: str, message: str) -> NotebookNode:
    """An error output that carries only the message: a traceback would quote the test cell's source."""
    return nbformat.v4.new_output("error", ename=ename, evalue=message, traceback=[f"{ename}: {message}"])


def graded_cell(run: CellRun) -> NotebookNode:
    """The cell as it appears in the graded notebook: its source, and outputs that say how it ended."""
    cell = copy.deepcopy(run.cell)
    if run.kind == "markdown":
        return cell
    cell.outputs, cell.execution_count = [], None
    result = run.result
    if result.stdout:
        cell.outputs.append(nbformat.v4.new_output("stream", name="stdout", text=result.stdout))
    for data in result.outputs:  # display_data, never execute_result: nbgrader reads a number there as points
        cell.outputs.append(nbformat.v4.new_output("display_data", data=data))
    if not result.ok:
        if run.kind == "test":
            message = run.message
        elif run.kind == "solution":
            message = solution_problem(result, nbk.grade_id(run.cell))
        else:
            message = failure_message(result)
        cell.outputs.append(error_output(result.ename or "Error", message))
    return cell


def unrunnable_notebook(instructor: NotebookNode, reason: str) -> list[NotebookNode]:
    """A submission with none of the chapter's exercise cells: the check refuses it; here every exercise
    scores 0 with the reason, and nothing runs."""
    cells = []
    for kind, cell in nbk.grading_cells(instructor, nbformat.v4.new_notebook(), markdown=True):
        cell = copy.deepcopy(cell)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            if kind == "test":
                cell.outputs.append(error_output("WrongNotebook", reason))
        cells.append(cell)
    return cells


class GradeLikeCheck(NbGraderPreprocessor):
    """Replaces nbgrader's ``Execute``: grade the sanitized submission with ``grading.grade``.

    An nbgrader preprocessor, so enabled by default: nbconvert registers plain preprocessors disabled,
    and a disabled one here would leave every test cell without an error, which nbgrader scores full.
    """

    memory_mb = Integer(
        None, allow_none=True, help="grading kernel memory cap in MiB (None: the check's default)"
    ).tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        info = resources["nbgrader"]
        source = source_notebook(self.config, info["assignment"], info["notebook"])
        instructor = nbk.read(source)  # grade() gives its setup cells their ids (make_course_dir did too)
        cwd = Path(resources.get("metadata", {}).get("path") or ".")
        name = f"{info['notebook']}.ipynb ({info['student']})"
        try:
            report = grade(instructor, nb, name, cwd, memory_mb=self.memory_mb)
        except nbk.WrongNotebook as exc:
            self.log.warning("%s", exc)
            nb.cells = unrunnable_notebook(instructor, str(exc))
        else:
            nb.cells = [graded_cell(run) for run in report.cells]
            ran = [cell for cell in nb.cells if cell.cell_type == "code"]
            for count, cell in enumerate(ran, 1):  # numbered in run order: feedback shows In [n], not In [ ]
                cell.execution_count = count
            for error in report.setup_errors:
                self.log.warning("%s: %s", name, error)
        # the instructor's settings (cell timeout, budget), not whatever the submission's metadata says
        nb.metadata["kvlib"] = copy.deepcopy(instructor.metadata.get("kvlib", {}))
        return nb, resources


class TagRunAll(NbGraderPreprocessor):
    """generate_assignment: tag exercise cells ``raises-exception`` (see notebook.tag_exercise_cells)."""

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        return nbk.tag_exercise_cells(nb), resources


class HideTestSource(NbGraderPreprocessor):
    """Feedback pipeline: drop the hidden-test region from every test cell (nbgrader issue #917 shows
    it in feedback otherwise). Error outputs already carry only the check's message."""

    def preprocess_cell(self, cell: NotebookNode, resources: dict, index: int) -> tuple[NotebookNode, dict]:
        if nbk.is_test(cell):
            cell.source = strip_hidden_tests(cell.source)
        return cell, resources


def strip_hidden_tests(source: str) -> str:
    """`source` with every `### BEGIN HIDDEN TESTS` ... `### END HIDDEN TESTS` region replaced by a note."""
    kept, hidden = [], False
    for line in source.splitlines():
        if "BEGIN HIDDEN TESTS" in line:
            hidden = True
            kept.append(line[: len(line) - len(line.lstrip())] + HIDDEN_TESTS_NOTE)
        elif "END HIDDEN TESTS" in line:
            hidden = False
        elif not hidden:
            kept.append(line)
    return "\n".join(kept)
