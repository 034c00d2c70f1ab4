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

import copy
import csv
import html
import os
import re
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
from .release import CONFIG_TEMPLATE, make_course_dir, nbgrader, require_folder


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


class OutdatedCourseConfig(ValueError):
    """A course folder whose nbgrader config does not grade like the self-check."""


def require_current_config(course: Path) -> None:
    """Refuse a course config without our autograde and feedback steps (one made by an older version of
    the course): nbgrader would score by its own rules, and its feedback would show the hidden tests."""
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    steps = []
    for section, key in (("Autograde", "autograde_preprocessors"), ("GenerateFeedback", "preprocessors")):
        listed = (config.get(section) or {}).get(key)  # dict.get: a Config would invent a lazy value
        steps += [str(getattr(step, "__name__", step)) for step in listed or []]
    missing = [name for name in ("GradeLikeCheck", "HideTestSource") if not any(name in s for s in steps)]
    if missing:
        raise OutdatedCourseConfig(
            f"{course / 'nbgrader_config.py'} lacks {', '.join(missing)} (made by an older version of this "
            "course?): nbgrader would grade by its own rules and its feedback would show the hidden tests. "
            f"Replace it: cp {CONFIG_TEMPLATE} {course}/ (then add back any c.Exchange.root or "
            "c.CourseDirectory.course_id line of yours)"
        )


@dataclass
class Submission:
    student: str
    assignment: str
    score: float = 0.0
    max_score: float = 0.0
    seconds: float = 0.0
    findings: list[str] = field(default_factory=list)
    error: str = ""  # why it could not be graded at all

    def line(self, done: int, total: int) -> str:
        head = f"[{done}/{total}] {self.student:<16} {self.assignment:<20}"
        if self.error:
            return f"{head} NOT GRADED: {self.error}"
        return f"{head} {self.score:g}/{self.max_score:g}  ({self.seconds:.1f} s)"


@dataclass
class GradingSummary:
    lines: list[str]
    failed: int  # submissions (or student folders) that could not be graded

    def __str__(self) -> str:
        return "\n".join(self.lines)


def grade_submissions(
    submissions: Path,
    out_dir: Path | None = None,
    course_root: str | Path | None = None,
    jobs: int = 1,
    report: Callable[[str], None] | None = None,
) -> GradingSummary:
    """Autograde everything under `submissions`; write out_dir/grades.csv and out_dir/feedback/.

    `submissions` is the instructor's course folder or its submitted/ (graded in place), or a folder
    holding submitted/ (graded in `course_root`, a fresh course folder, temporary by default).
    `out_dir` defaults to the course folder's grades/ (./grades for a temporary one). `jobs`
    submissions are graded at once, each in its own memory-capped kernel; `report` gets one line per
    finished submission and per finding.
    """
    jobs = require_int("jobs (--jobs)", jobs, minimum=1)
    report = report or (lambda line: print(line, flush=True))
    submissions = Path(submissions)
    course = next((p for p in (submissions, submissions.parent) if p.is_dir() and is_course_dir(p)), None)
    if course is not None:
        if course_root is not None:
            raise NotADirectoryError(
                f"--course-dir is for a bare submitted/ folder; {course} is a course folder, graded in place"
            )
        find_submitted(course)
        require_current_config(course)
        return grade_course(course, course / "grades" if out_dir is None else out_dir, jobs, report)
    submitted = find_submitted(submissions)
    out_dir = require_folder("the grades folder (--out)", Path("grades") if out_dir is None else out_dir)
    if course_root is not None:
        course_root = require_folder("the course folder (--course-dir)", course_root)
    with tempfile.TemporaryDirectory(prefix="kvcourse-grade-") as tmp:
        root = Path(course_root) if course_root else Path(tmp)
        make_course_dir(root)
        require_known_assignments(root, submitted)
        shutil.copytree(submitted, root / "submitted", dirs_exist_ok=True)
        summary = grade_course(root, out_dir, jobs, report)
    summary.lines = [line for line in summary.lines if not line.startswith("gradebook:")]  # it is gone
    return summary


def require_known_assignments(root: Path, submitted: Path) -> list[str]:
    """The assignments submitted to; FileNotFoundError naming any the course folder does not have."""
    assignments = sorted(p.name for p in (root / "source").iterdir() if p.is_dir())
    wanted = sorted({p.name for p in submitted.glob("*/*") if p.is_dir()})
    unknown = [a for a in wanted if a not in assignments]
    if unknown:
        names, known = ", ".join(unknown), ", ".join(assignments)
        raise FileNotFoundError(f"submissions for unknown assignments: {names} (known: {known})")
    return wanted


def grade_course(root: Path, out_dir: Path, jobs: int, report: Callable[[str], None]) -> GradingSummary:
    """Grade root/submitted/ in the course folder `root`: autograde, export, feedback, leak check."""
    submitted = root / "submitted"
    wanted = require_known_assignments(root, submitted)
    out_dir = require_folder("the grades folder (--out)", out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)  # only once the submissions make sense
    pairs, problems = submission_layout(root, submitted)
    for student, problem in problems:
        report(f"NOT GRADED: {student}: {problem}")
    generate_missing_assignments(root, wanted)
    for student in sorted({student for student, _ in problems} - {student for student, _ in pairs}):
        nbgrader(root, "db", "student", "add", student)  # so the CSV lists them, with 0
    started = time.monotonic()
    results = autograde_all(root, pairs, jobs, report, out_dir / "logs")
    seconds = time.monotonic() - started
    nbgrader(root, "export", "--to", str(out_dir.resolve() / "grades.csv"))
    for assignment in wanted:  # HTML for `nbgrader release_feedback`, hidden tests stripped
        nbgrader(root, "generate_feedback", assignment, "--force")
    require_no_hidden_tests(root / "feedback")
    graded = [r for r in results if not r.error]
    lines = [f"grades: {out_dir / 'grades.csv'}", f"gradebook: {root / 'gradebook.db'}"]
    lines.append(
        f"autograded {len(graded)} submission(s) in {seconds:.0f} s with {jobs} job(s)"
        + (f": {sum(r.seconds for r in graded) / len(graded):.1f} s each" if graded else "")
    )
    lines += write_feedback(root, out_dir / "feedback")
    failed = len(results) - len(graded) + len(problems)
    if failed:
        lines.append(f"{failed} submission(s) NOT GRADED: see the lines above")
    return GradingSummary(lines, failed)


def submission_layout(root: Path, submitted: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(student, assignment) pairs ready for nbgrader, in assignment order, and what is wrong with the
    rest as (student, problem): a notebook outside an assignment folder, none or a misnamed one in it
    (an LMS export renames files; nbgrader would fail with no useful message)."""
    pairs, problems = [], []
    for student_dir in sorted(p for p in submitted.iterdir() if p.is_dir()):
        student = student_dir.name
        stray = sorted(p.name for p in student_dir.glob("*.ipynb"))
        folders = sorted(p for p in student_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        if stray:
            expected = f"submitted/{student}/<assignment>/<assignment>.ipynb"
            problems.append(
                (student, f"{', '.join(stray)} is not in an assignment folder (expected {expected})")
            )
        elif not folders:
            problems.append((student, f"no assignment folder in submitted/{student}/"))
        for folder in folders:
            expected = sorted(p.name for p in (root / "source" / folder.name).glob("*.ipynb"))
            found = sorted(p.name for p in folder.glob("*.ipynb"))
            absent = [name for name in expected if name not in found]
            if absent:
                other = f"found {', '.join(found)}; rename it" if found else "no notebook in it"
                problems.append((student, f"{folder.name}/ lacks {', '.join(absent)} ({other})"))
            else:
                pairs.append((student, folder.name))
    # by assignment first: two jobs then grade two students, never one student's two assignments at once
    # (nbgrader creates a new student on first sight, and two processes could both try)
    return sorted(pairs, key=lambda pair: (pair[1], pair[0])), problems


def generate_missing_assignments(root: Path, assignments: list[str]) -> None:
    """`nbgrader generate_assignment` for each assignment not generated yet: an instructor who released
    it has done so (release/<assignment>/ exists), and regenerating would rewrite what they released."""
    for name in assignments:
        if not ((root / "gradebook.db").exists() and (root / "release" / name).is_dir()):
            nbgrader(root, "generate_assignment", name, "--force")


def autograde_all(
    root: Path, pairs: list[tuple[str, str]], jobs: int, report: Callable[[str], None], logs: Path
) -> list[Submission]:
    """`nbgrader autograde` for each (student, assignment), `jobs` at a time, reporting as each ends."""
    results = []
    # torch in each grading kernel would use every core: with several jobs, share them out instead
    env = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // jobs))} if jobs > 1 else {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(autograde_one, root, s, a, logs, env) for s, a in pairs]
        for done, future in enumerate(as_completed(futures), 1):
            result = future.result()
            results.append(result)
            report(result.line(done, len(pairs)))
            for finding in result.findings:
                report(f"      {finding}")
    return sorted(results, key=lambda r: (r.student, r.assignment))


def autograde_one(root: Path, student: str, assignment: str, logs: Path, env: dict[str, str]) -> Submission:
    """Autograde one submission. Never raises: what went wrong is the result's error (its nbgrader log
    saved under `logs`), so one broken submission does not stop the class."""
    result = Submission(student, assignment)
    started = time.monotonic()
    try:
        try:
            nbgrader(root, "autograde", assignment, "--student", student, "--force", env=env)
        except RuntimeError as exc:
            if not any(word in str(exc) for word in ("database is locked", "IntegrityError")):
                raise
            # a gradebook race (two nbgrader processes writing at once): once more
            nbgrader(root, "autograde", assignment, "--student", student, "--force", env=env)
        result.seconds = time.monotonic() - started
        result.score, result.max_score = gradebook_score(root, student, assignment)
        result.findings = submission_findings(root, student, assignment)
    except Exception as exc:  # noqa: BLE001 - reported per submission, with the log kept
        log = logs / f"{student}-{assignment}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(str(exc))
        result.error = f"{failure_reason(str(exc))} (log: {log})"
    return result


def gradebook_score(root: Path, student: str, assignment: str) -> tuple[float, float]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        submission = gb.find_submission(assignment, student)
        return submission.score, submission.max_score


def submission_findings(root: Path, student: str, assignment: str) -> list[str]:
    """Tampering found against the released notebook, and what happened while it ran."""
    findings = []
    for path in sorted((root / "submitted" / student / assignment).glob("*.ipynb")):
        released = root / "release" / assignment / path.name
        if released.exists():
            findings += tampering_findings(read_leniently(released), read_leniently(path))
        graded = root / "autograded" / student / assignment / path.name
        if graded.exists():
            findings += run_findings(read_leniently(graded))
    return findings


def read_leniently(path: Path) -> nbformat.NotebookNode:
    """A notebook as nbgrader reads it: a submission nbformat's validator rejects is still graded."""
    return nbformat.read(path, as_version=4)


def failure_reason(log: str) -> str:
    """The line of a failed nbgrader run that says why: the last exception line, else its last ERROR."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    exceptions = [
        line for line in lines if re.match(r"^[\w.]*(Error|Exception|Unavailable|Notebook)\b:", line)
    ]
    errors = [line for line in lines if "| ERROR]" in line and "above traceback" not in line]
    return (exceptions or errors or lines or ["nbgrader failed"])[-1][:300]


def require_no_hidden_tests(feedback: Path) -> None:
    """A last guard before `nbgrader release_feedback`: delete any feedback file that shows hidden-test
    source, and say so (our feedback step removes them; this catches a config that lost it)."""
    leaked = [p for p in sorted(feedback.rglob("*.html")) if "BEGIN HIDDEN TESTS" in visible_text(p)]
    for path in leaked:
        path.unlink()
    if leaked:
        raise RuntimeError(
            f"{len(leaked)} feedback file(s) showed hidden-test source and were deleted (first: "
            f"{leaked[0]}); does the course's nbgrader_config.py still have HideTestSource?"
        )


def visible_text(path: Path) -> str:
    """What a reader sees of an HTML file: tags dropped (syntax highlighting splits code into spans)."""
    return html.unescape(re.sub(r"<[^>]+>", "", path.read_text(errors="replace")))


def tampering_findings(released: nbformat.NotebookNode, submitted: nbformat.NotebookNode) -> list[str]:
    """What a submission changed in the cells it must not change (graded as released either way).

    Setup cells without ids get the source-derived ones first, as grading does, so a file that lost
    them (a solutions/ copy, an editor that drops metadata) is not reported as deleting them."""
    submitted = nbk.with_fixed_cell_ids(copy.deepcopy(submitted))
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


def cell_messages(nb: nbformat.NotebookNode) -> dict[str, str]:
    """Per test cell (grade_id) the error it raised in an autograded notebook, if any."""
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
            graded = read_leniently(path)
            messages = cell_messages(graded)
            notebook = gb.find_submission_notebook(path.stem, assignment, student)
            grades = {grade.name: grade for grade in notebook.grades}
            order = [nbk.grade_id(c) for c in graded.cells if nbk.is_test(c)]
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
