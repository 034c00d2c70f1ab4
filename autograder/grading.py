"""Grade one notebook with the hidden tests, cell by cell, in a sandboxed kernel.

The learner's solution cells run in the instructor's notebook skeleton (see
`notebook.grading_cells`). Each exercise is scored on its own: a hang, a crash or an exception
costs that exercise only. Feedback is the check's message, never the test cell's source.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nbformat import NotebookNode

from . import notebook as nbk
from .kernel import CellResult, GradingKernel

# Runs before any learner code: snapshots the genuine torch/builtins functions (see _guard).
PRELUDE = "import autograder._guard\n"
DEFAULT_CELL_TIMEOUT_S = 60.0


@dataclass
class ExerciseResult:
    grade_id: str
    score: float
    max_score: float
    message: str = ""


@dataclass
class NotebookReport:
    notebook: str
    exercises: list[ExerciseResult] = field(default_factory=list)
    seconds: float = 0.0
    kernel_restarts: int = 0
    # fixed (setup) cells that failed: not scored, but a sign of a broken environment or notebook
    setup_errors: list[str] = field(default_factory=list)

    @property
    def score(self) -> float:
        return sum(e.score for e in self.exercises)

    @property
    def max_score(self) -> float:
        return sum(e.max_score for e in self.exercises)

    def as_dict(self) -> dict:
        return {
            "notebook": self.notebook,
            "score": self.score,
            "max_score": self.max_score,
            "seconds": round(self.seconds, 2),
            "kernel_restarts": self.kernel_restarts,
            "setup_errors": self.setup_errors,
            "exercises": [asdict(e) for e in self.exercises],
        }


def cell_timeout(nb: NotebookNode) -> float:
    return float(nb.metadata.get("kvlib", {}).get("cell_timeout_s", DEFAULT_CELL_TIMEOUT_S))


def failure_message(result: CellResult) -> str:
    """What a learner is told about a failed cell: the check's message, never hidden source."""
    if result.status == "timeout":
        return f"{result.evalue}: does your code loop forever?"
    if result.status == "dead":
        return f"the kernel died ({result.evalue}): sys.exit/os._exit, a crash or the memory cap"
    if result.ename in ("CheckFailed", "AssertionError"):
        return result.evalue or "a test assertion failed"
    return f"{result.ename}: {result.evalue}"


def solution_problem(result: CellResult, grade_id: str) -> str:
    """How a failed solution cell is described before the test's own message."""
    if result.status == "timeout":
        return f"your solution cell {grade_id!r} did not finish: {failure_message(result)}"
    if result.status == "dead":
        return f"your solution cell {grade_id!r} killed the kernel: {failure_message(result)}"
    if result.ename == "MemoryError":
        return f"your solution cell {grade_id!r} ran out of memory (the grader caps memory)"
    return f"your solution cell {grade_id!r} raised {failure_message(result)}"


class Replayer:
    """A grading kernel that remembers what ran, so it can be rebuilt after a crash."""

    def __init__(self, cwd: Path, memory_mb: int | None, timeout: float):
        self.kernel = GradingKernel(cwd, memory_mb=memory_mb)
        self.timeout = timeout
        self.history: list[str] = []

    def __enter__(self) -> Replayer:
        self.kernel.start()
        self.kernel.run(PRELUDE, timeout=120)
        return self

    def __exit__(self, *exc) -> None:
        self.kernel.shutdown()

    def run(self, code: str, remember: bool = True) -> CellResult:
        result = self.kernel.run(code, timeout=self.timeout)
        if result.status == "dead":
            self.rebuild()
        elif remember and result.status != "timeout":
            self.history.append(code)
        return result

    def rebuild(self) -> None:
        """Fresh kernel, prelude, then every cell that had completed before the crash."""
        if self.kernel.km is not None and self.kernel.km.is_alive():
            self.kernel.restart()
        else:
            self.kernel.shutdown()
            self.kernel.restarts += 1
            self.kernel.start()
        self.kernel.run(PRELUDE, timeout=120)
        for code in self.history:
            self.kernel.run(code, timeout=self.timeout)


def grade(
    instructor: NotebookNode, learner: NotebookNode, name: str, cwd: Path, memory_mb=None
) -> NotebookReport:
    """Score every exercise of `learner` against the instructor's hidden tests."""
    started = time.monotonic()
    instructor = nbk.with_fixed_cell_ids(instructor)
    # A learner file without setup-cell ids (a solutions/ notebook, or one saved by a tool that drops
    # metadata) gets the same source-derived ids, so its setup cells are recognised as the
    # instructor's and run once, in the instructor's version, instead of again as the learner's own.
    learner = nbk.with_fixed_cell_ids(copy.deepcopy(learner))
    points = {e.test_id: e for e in nbk.exercises(instructor)}
    report = NotebookReport(name)
    problems: dict[str, str] = {}
    with Replayer(cwd, memory_mb, cell_timeout(instructor)) as runner:
        for kind, cell in nbk.grading_cells(instructor, learner):
            gid = nbk.grade_id(cell) or ""
            # Handing in kvlib's own implementation is caught by the checks themselves, from what runs
            # (autograder.checks.delegation), so a comment or an import that mentions kvlib costs nothing.
            result = runner.run(cell.source, remember=kind != "test")
            if kind == "fixed" and not result.ok:
                report.setup_errors.append(f"setup cell {gid!r}: {failure_message(result)}")
            if kind == "solution" and not result.ok and gid not in problems:
                if not (result.ename == "NotImplementedError"):
                    problems[gid] = solution_problem(result, gid)
            if kind == "test":
                exercise = points[gid]
                problem = problems.get(exercise.solution_id)
                if not result.ok:
                    message = failure_message(result)
                    if problem:
                        message = f"{problem}; then the tests said: {message}"
                    report.exercises.append(
                        ExerciseResult(exercise.solution_id, 0.0, exercise.points, message)
                    )
                else:
                    report.exercises.append(
                        ExerciseResult(exercise.solution_id, exercise.points, exercise.points)
                    )
        report.kernel_restarts = runner.kernel.restarts
    report.seconds = time.monotonic() - started
    return report


def check_notebook(learner_path: Path, instructor_path: Path, memory_mb: int | None = None) -> NotebookReport:
    """Self-check: grade a learner's notebook file against its instructor source."""
    learner = nbk.read(learner_path)
    instructor = nbk.read(instructor_path)
    return grade(instructor, learner, Path(learner_path).name, Path(learner_path).resolve().parent, memory_mb)
