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

from kvlib.validate import require_int

from . import notebook as nbk
from .kernel import CellResult, GradingKernel, KernelUnavailable, memory_cap_text
from .sandbox_kernel import DEFAULT_MEMORY_MB

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
class CellRun:
    """One cell of a grading run: what ran, how it ended, and for a test cell what the learner is told."""

    kind: str  # fixed, solution, test, extra or markdown (see notebook.grading_cells)
    cell: NotebookNode
    result: CellResult | None  # None for markdown: shown, not run
    message: str = ""


@dataclass
class NotebookReport:
    notebook: str
    exercises: list[ExerciseResult] = field(default_factory=list)
    seconds: float = 0.0
    kernel_restarts: int = 0
    # fixed (setup) cells that failed: not scored, but a sign of a broken environment or notebook
    setup_errors: list[str] = field(default_factory=list)
    # every cell run, in order: nbgrader's autograde writes these into the graded notebook
    cells: list[CellRun] = field(default_factory=list, repr=False)

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
    if result.ename == "SystemExit":  # IPython reports it as an error: the kernel lives, the cell stopped
        code = f"({result.evalue})" if result.evalue else "()"
        return (
            f"your solution cell {grade_id!r} called sys.exit{code}: nothing after that call ran, so what "
            "the cell should define is missing"
        )
    return f"your solution cell {grade_id!r} raised {failure_message(result)}"


class Replayer:
    """A grading kernel that remembers what ran, so it can be rebuilt after a crash."""

    def __init__(self, cwd: Path, memory_mb: int | None, timeout: float):
        self.kernel = GradingKernel(cwd, memory_mb=memory_mb)
        self.timeout = timeout
        self.history: list[str] = []

    def __enter__(self) -> Replayer:
        self.kernel.__enter__()
        prelude = self.kernel.run(PRELUDE, timeout=120)
        if not prelude.ok:  # importing torch failed before any notebook code: never a score
            self.kernel.close()
            cap = memory_cap_text(self.kernel.memory_mb)
            raise KernelUnavailable(
                f"the grading kernel could not start: importing torch failed under {cap} "
                f"({failure_message(prelude)}): try a larger --memory-mb or leave it out "
                f"(default {DEFAULT_MEMORY_MB})"
            )
        return self

    def __exit__(self, *exc) -> None:
        self.kernel.close()

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


def out_of_memory(result: CellResult) -> bool:
    """The kernel died, or raised MemoryError / could not map memory: the cap's signature."""
    return result.ename in ("KernelDied", "MemoryError") or "Cannot allocate memory" in result.evalue


def setup_out_of_memory(gid: str, result: CellResult, memory_mb: int | None) -> KernelUnavailable:
    """A setup cell that ran before any learner code is the instructor's alone: not a learner's score."""
    return KernelUnavailable(
        f"the grading kernel ran out of memory in the notebook's own setup cell {gid!r}, before any of "
        f"your code ran, under {memory_cap_text(memory_mb)} ({failure_message(result)}): the cap is too "
        f"small for this notebook; try a larger --memory-mb or leave it out (default {DEFAULT_MEMORY_MB})"
    )


def setup_error(gid: str, result: CellResult, memory_mb: int | None, learner_failed: str) -> str:
    """A failed setup cell, and whose it probably is: the learner's if one of their cells failed earlier
    (a setup cell using an exercise's function, or the state a sys.exit() left), the notebook's otherwise."""
    hint = f" (out of memory under {memory_cap_text(memory_mb)}?)" if out_of_memory(result) else ""
    if learner_failed:
        cause = f"probably because your cell {learner_failed!r} failed before it: fix that one first"
    else:
        cause = "not your code: the notebook's own setup failed here"
    return f"setup cell {gid!r}: {failure_message(result)}{hint} ({cause})"


def missing_exercise_problems(instructor: NotebookNode, learner: NotebookNode, name: str) -> dict[str, str]:
    """What to say about exercise cells absent from `learner`; none at all means another notebook.

    A notebook with none of the chapter's exercise cells (another chapter's file under this name, or
    every cell deleted) is refused before anything runs. One with only some missing is graded: the
    missing exercises score 0 with a message saying so, the others as usual.
    """
    missing = nbk.missing_exercises(instructor, learner)
    stem = Path(name).stem
    if missing and len(missing) == len(nbk.exercises(instructor)):
        found = [nbk.grade_id(c) for c in learner.cells if nbk.is_solution(c)]
        has = f"; its exercise cells are {', '.join(found[:6])}" if found else ""
        raise nbk.WrongNotebook(
            f"{name}: this notebook does not look like {stem}: exercise cells missing: {', '.join(missing)}"
            f"{has} (another chapter's notebook saved under this name, or its cells deleted?); "
            f"start again from a fresh copy of course/{stem}.ipynb"
        )
    return {
        gid: f"your notebook has no exercise cell {gid!r} (deleted, or its cell metadata lost): "
        f"copy that cell back from a fresh copy of course/{stem}.ipynb"
        for gid in missing
    }


def grade(
    instructor: NotebookNode, learner: NotebookNode, name: str, cwd: Path, memory_mb=None
) -> NotebookReport:
    """Score every exercise of `learner` against the instructor's hidden tests.

    Raises `nbk.WrongNotebook` (before running anything) when `learner` has none of the
    instructor's exercise cells, and `KernelUnavailable` when the kernel cannot start or runs out
    of memory in a setup cell: neither is a score.
    """
    if memory_mb is not None:
        memory_mb = require_int("memory_mb", memory_mb, minimum=1)
    started = time.monotonic()
    instructor = nbk.with_fixed_cell_ids(instructor)
    # A learner file without setup-cell ids (a solutions/ notebook, or one saved by a tool that drops
    # metadata) gets the same source-derived ids, so its setup cells are recognised as the
    # instructor's and run once, in the instructor's version, instead of again as the learner's own.
    learner = nbk.with_fixed_cell_ids(copy.deepcopy(learner))
    points = {e.test_id: e for e in nbk.exercises(instructor)}
    report = NotebookReport(name)
    problems = missing_exercise_problems(instructor, learner, name)
    learner_ran = False  # an out-of-memory setup cell before any learner code is the cap, not a score
    learner_failed = ""  # the first learner cell that failed: a later setup failure may be its doing
    with Replayer(cwd, memory_mb, cell_timeout(instructor)) as runner:
        for kind, cell in nbk.grading_cells(instructor, learner, markdown=True):
            if kind == "markdown":
                report.cells.append(CellRun(kind, cell, None))
                continue
            gid = nbk.grade_id(cell) or ""
            # Handing in kvlib's own implementation is caught by the checks themselves, from what runs
            # (autograder.checks.delegation), so a comment or an import that mentions kvlib costs nothing.
            result = runner.run(cell.source, remember=kind != "test")
            if kind == "fixed" and not result.ok:
                if out_of_memory(result) and not learner_ran:  # only the instructor's code has run
                    raise setup_out_of_memory(gid, result, memory_mb)
                report.setup_errors.append(setup_error(gid, result, memory_mb, learner_failed))
            learner_ran = learner_ran or kind in ("solution", "extra")
            if kind in ("solution", "extra") and not result.ok and not learner_failed:
                learner_failed = gid or "one of your own cells"
            if kind == "solution" and not result.ok and gid not in problems:
                if not (result.ename == "NotImplementedError"):
                    problems[gid] = solution_problem(result, gid)
            message = ""
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
            report.cells.append(CellRun(kind, cell, result, message))
        report.kernel_restarts = runner.kernel.restarts
    report.seconds = time.monotonic() - started
    return report


def check_notebook(learner_path: Path, instructor_path: Path, memory_mb: int | None = None) -> NotebookReport:
    """Self-check: grade a learner's notebook file against its instructor source."""
    learner = nbk.read(learner_path)
    instructor = nbk.read(instructor_path)
    return grade(instructor, learner, Path(learner_path).name, Path(learner_path).resolve().parent, memory_mb)
