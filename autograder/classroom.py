"""Classroom grading with nbgrader: autograde every submission, export a CSV, write feedback.

Input is nbgrader's standard layout, `submitted/<student>/<assignment>/<notebook>.ipynb`, where
the assignment is a notebook's stem (`01_naive_cache`). Given the instructor's course folder (made
by `python -m autograder instructor`), grading happens there, so its gradebook, `nbgrader export`,
manual grading and the formgrader all see the results. nbgrader does the bookkeeping; its autograde
step grades like the self-check (see `nbgrader_grading`). We add parallel submissions, one line per
finished submission and per real finding, the CSV, and per-student feedback that quotes check
messages, never test source.
"""

from __future__ import annotations

import csv
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from kvlib.validate import require_int

from . import notebook as nbk
from .release import make_course_dir, nbgrader, require_folder


def find_submitted(path: Path) -> Path:
    """Accept a course folder holding submitted/, or the submitted/ folder itself."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such folder (expected a course folder holding submitted/)")
    if (path / "submitted").is_dir():
        path = path / "submitted"
    elif not (path.is_dir() and path.name == "submitted"):
        raise FileNotFoundError(f"{path}: expected a folder named submitted/ or one that contains it")
    if not any(p.is_dir() for p in path.glob("*/*")):
        raise FileNotFoundError(f"{path}: no submissions in it (expected submitted/<student>/<assignment>/)")
    return path


def is_course_dir(path: Path) -> bool:
    """An nbgrader course folder made by `python -m autograder instructor` (config and source/)."""
    return (path / "nbgrader_config.py").is_file() and (path / "source").is_dir()


@dataclass
class Submission:
    student: str
    assignment: str
    score: float = 0.0
    max_score: float = 0.0
    seconds: float = 0.0
    findings: list[str] = field(default_factory=list)
    error: str = ""  # nbgrader could not grade it at all

    def line(self, done: int, total: int) -> str:
        head = f"[{done}/{total}] {self.student:<16} {self.assignment:<20}"
        if self.error:
            return f"{head} NOT GRADED: {self.error}"
        return f"{head} {self.score:g}/{self.max_score:g}  ({self.seconds:.1f} s)"


def grade_submissions(
    submissions: Path,
    out_dir: Path | None = None,
    course_root: str | Path | None = None,
    jobs: int = 1,
    report: Callable[[str], None] | None = None,
) -> str:
    """Autograde everything under `submissions`; write out_dir/grades.csv and out_dir/feedback/.

    `submissions` is the instructor's course folder (graded in place) or a folder holding submitted/
    (graded in `course_root`, a fresh course folder, temporary by default). `out_dir` defaults to the
    course folder's grades/ (./grades for a temporary one). `jobs` submissions are graded at once, each
    in its own memory-capped kernel; `report` gets one line per finished submission and per finding.
    """
    jobs = require_int("jobs (--jobs)", jobs, minimum=1)
    report = report or (lambda line: print(line, flush=True))
    submissions = Path(submissions)
    in_place = submissions.is_dir() and is_course_dir(submissions)
    submitted = find_submitted(submissions)
    if out_dir is None:
        out_dir = submissions / "grades" if in_place else Path("grades")
    out_dir = require_folder("the grades folder (--out)", out_dir)
    if course_root is not None:
        course_root = require_folder("the course folder (--course-dir)", course_root)
    with tempfile.TemporaryDirectory(prefix="kvcourse-grade-") as tmp:
        if in_place:
            root = submissions
            assignments = sorted(p.name for p in (root / "source").iterdir() if p.is_dir())
        else:
            root = Path(course_root) if course_root else Path(tmp)
            assignments = make_course_dir(root)
        pairs = sorted((p.parent.name, p.name) for p in submitted.glob("*/*") if p.is_dir())
        unknown = sorted({a for _, a in pairs} - set(assignments))
        if unknown:
            names, known = ", ".join(unknown), ", ".join(assignments)
            raise FileNotFoundError(f"submissions for unknown assignments: {names} (known: {known})")
        out_dir.mkdir(parents=True, exist_ok=True)  # only once the submissions make sense
        if not in_place:
            shutil.copytree(submitted, root / "submitted", dirs_exist_ok=True)
        wanted = sorted({a for _, a in pairs})
        generate_missing_assignments(root, wanted)
        started = time.monotonic()
        results = autograde_all(root, pairs, jobs, report)
        seconds = time.monotonic() - started
        nbgrader(root, "export", "--to", str(out_dir.resolve() / "grades.csv"))
        for assignment in wanted:  # HTML for `nbgrader release_feedback`, hidden tests stripped
            nbgrader(root, "generate_feedback", assignment, "--force")
        lines = write_feedback(root, out_dir / "feedback")
    failed = [r for r in results if r.error]
    summary = [f"grades: {out_dir / 'grades.csv'}", f"gradebook: {root / 'gradebook.db'}" if in_place else ""]
    summary.append(
        f"autograded {len(results)} submission(s) in {seconds:.0f} s with {jobs} job(s): "
        f"{seconds / max(len(results), 1):.1f} s per submission"
    )
    summary += lines
    if failed:
        summary.append(f"{len(failed)} submission(s) NOT GRADED: see the lines above")
    return "\n".join(line for line in summary if line)


def generate_missing_assignments(root: Path, assignments: list[str]) -> None:
    """`nbgrader generate_assignment` for each assignment not generated yet: an instructor who released
    it has done so (release/<assignment>/ exists), and regenerating would rewrite what they released."""
    for name in assignments:
        if not ((root / "gradebook.db").exists() and (root / "release" / name).is_dir()):
            nbgrader(root, "generate_assignment", name, "--force")


def autograde_all(
    root: Path, pairs: list[tuple[str, str]], jobs: int, report: Callable[[str], None]
) -> list[Submission]:
    """`nbgrader autograde` for each (student, assignment), `jobs` at a time, reporting as each ends."""
    results = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(autograde_one, root, student, assignment) for student, assignment in pairs]
        for done, future in enumerate(as_completed(futures), 1):
            result = future.result()
            results.append(result)
            report(result.line(done, len(pairs)))
            for finding in result.findings:
                report(f"      {finding}")
    return sorted(results, key=lambda r: (r.student, r.assignment))


def autograde_one(root: Path, student: str, assignment: str) -> Submission:
    """Autograde one submission; a failure to grade it is reported, not raised (the others go on)."""
    from nbgrader.api import Gradebook

    result = Submission(student, assignment)
    started = time.monotonic()
    try:
        nbgrader(root, "autograde", assignment, "--student", student, "--force")
    except RuntimeError as exc:
        result.error = last_error_line(str(exc))
        return result
    finally:
        result.seconds = time.monotonic() - started
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        submission = gb.find_submission(assignment, student)
        result.score, result.max_score = submission.score, submission.max_score
    for path in sorted((root / "submitted" / student / assignment).glob("*.ipynb")):
        released = root / "release" / assignment / path.name
        if released.exists():
            result.findings += tampering_findings(nbk.read(released), nbk.read(path))
        graded = root / "autograded" / student / assignment / path.name
        if graded.exists():
            result.findings += run_findings(nbk.read(graded))
    return result


def last_error_line(text: str) -> str:
    """The line of nbgrader's log that says why (its `[... | ERROR]` lines), else the last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "| ERROR]" in line or "Error" in line]
    return (errors or lines or ["nbgrader failed"])[-1][:300]


def tampering_findings(released: nbformat.NotebookNode, submitted: nbformat.NotebookNode) -> list[str]:
    """What a submission changed in the cells it must not change (graded as released either way)."""
    theirs = {nbk.grade_id(c): c for c in submitted.cells if nbk.grade_id(c)}
    findings = []
    for cell in released.cells:
        gid = nbk.grade_id(cell)
        if cell.cell_type != "code" or not gid or nbk.is_solution(cell):
            continue
        what = "test cell" if nbk.is_test(cell) else "setup cell"
        mine = theirs.get(gid)
        if mine is None:
            findings.append(f"{what} {gid!r} deleted (restored for grading)")
            continue
        if mine.source.strip() != cell.source.strip():
            findings.append(f"{what} {gid!r} edited (graded with the original)")
        points = nbk.nbgrader_meta(cell).get("points")
        if nbk.nbgrader_meta(mine).get("points") != points:
            findings.append(
                f"{what} {gid!r}: points edited to {nbk.nbgrader_meta(mine).get('points')!r} "
                f"(graded out of {points})"
            )
    return findings


def run_findings(graded: nbformat.NotebookNode) -> list[str]:
    """What happened while grading that an instructor should know: a dead kernel, sys.exit, a timeout."""
    findings = []
    for cell in graded.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") != "error":
                continue
            gid = nbk.grade_id(cell) or "an extra cell"
            if out.get("ename") == "KernelDied" or "killed the kernel" in out.get("evalue", ""):
                findings.append(f"the kernel exited in {gid!r} (restarted; the cells before it replayed)")
            elif out.get("ename") == "SystemExit":
                findings.append(f"sys.exit() called in {gid!r}")
            elif out.get("ename") == "Timeout":
                findings.append(f"{gid!r} ran past the per-cell timeout")
    return findings


def cell_messages(autograded: Path) -> dict[str, str]:
    """Per test cell (grade_id) the error it raised in the autograded notebook, if any."""
    nb = nbk.read(autograded)
    messages = {}
    for cell in nb.cells:
        if not nbk.is_test(cell):
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                messages[nbk.grade_id(cell)] = out.get("evalue", "")
    return messages


def write_feedback(root: Path, feedback_dir: Path) -> list[str]:
    """One markdown report per student and assignment: points and the failing checks' messages, in
    the notebook's order."""
    from nbgrader.api import Gradebook

    summary = []
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        for path in sorted((root / "autograded").glob("*/*/*.ipynb")):
            student, assignment = path.parts[-3], path.parts[-2]
            messages = cell_messages(path)
            notebook = gb.find_submission_notebook(path.stem, assignment, student)
            grades = {grade.name: grade for grade in notebook.grades}
            order = [nbk.grade_id(c) for c in nbk.read(path).cells if nbk.is_test(c)]
            rows = [f"# {assignment}: {student}", "", "| exercise | points | feedback |", "|---|---|---|"]
            for name in order:
                grade = grades.get(name)
                if grade is None or grade.max_score == 0:
                    continue
                text = messages.get(name, "").replace("|", "\\|").replace("\n", " ")
                rows.append(
                    f"| {name.removesuffix('_test')} | {grade.score:g}/{grade.max_score:g} | {text} |"
                )
            rows.append("")
            rows.append(f"Total: {notebook.score:g} / {notebook.max_score:g}")
            target = feedback_dir / student / f"{assignment}.md"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("\n".join(rows) + "\n")
            summary.append(
                f"{student:<16} {assignment:<20} {notebook.score:g}/{notebook.max_score:g}  {target}"
            )
    return summary


def read_grades_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def make_submission(source: Path, student: str, root: Path, edit=None) -> Path:
    """Place a learner notebook as submitted/<student>/<assignment>/ (used by tests and demos)."""
    nb = nbformat.read(source, as_version=4)
    if edit is not None:
        edit(nb)
    target = root / "submitted" / student / source.stem / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target)
    return target
