"""Classroom grading with nbgrader: autograde every submission, export a CSV, write feedback.

Input is nbgrader's standard layout, `submitted/<student>/<assignment>/<notebook>.ipynb`, where
the assignment is a notebook's stem (`01_naive_cache`). nbgrader does the grading (restoring
the instructor's test cells, hidden tests included, from its database); we add the sandboxed
kernel, the CSV and per-student feedback that quotes check messages, never test source.
"""

from __future__ import annotations

import csv
import shutil
import tempfile
from pathlib import Path

import nbformat

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


def cell_messages(autograded: Path) -> dict[str, str]:
    """Per test cell (grade_id) the error it raised in the autograded notebook, if any."""
    nb = nbk.read(autograded)
    messages = {}
    for cell in nb.cells:
        if not nbk.is_test(cell):
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                messages[nbk.grade_id(cell)] = f"{out.get('ename')}: {out.get('evalue')}"
    return messages


def grade_submissions(submissions: Path, out_dir: Path, course_root: str | None = None) -> str:
    """Autograde everything under `submissions`; write out_dir/grades.csv and out_dir/feedback/."""
    submitted = find_submitted(submissions)
    out_dir = require_folder("the grades folder (--out)", out_dir)
    with tempfile.TemporaryDirectory(prefix="kvcourse-grade-") as tmp:
        root = Path(course_root) if course_root else Path(tmp)
        assignments = set(make_course_dir(root))
        wanted = sorted({p.name for p in submitted.glob("*/*") if p.is_dir()})
        unknown = [a for a in wanted if a not in assignments]
        if unknown:
            names, known = ", ".join(unknown), ", ".join(sorted(assignments))
            raise FileNotFoundError(f"submissions for unknown assignments: {names} (known: {known})")
        out_dir.mkdir(parents=True, exist_ok=True)  # only once the submissions make sense
        shutil.copytree(submitted, root / "submitted", dirs_exist_ok=True)
        for name in wanted:
            nbgrader(root, "generate_assignment", name, "--force")
        for student in sorted(p.name for p in submitted.iterdir() if p.is_dir()):
            nbgrader(root, "db", "student", "add", student)
        for name in wanted:
            nbgrader(root, "autograde", name, "--force")
        nbgrader(root, "export", "--to", str(out_dir.resolve() / "grades.csv"))
        lines = write_feedback(root, out_dir / "feedback")
    return "\n".join([f"grades: {out_dir / 'grades.csv'}", *lines])


def write_feedback(root: Path, feedback_dir: Path) -> list[str]:
    """One markdown report per student and assignment: points and the failing checks' messages."""
    from nbgrader.api import Gradebook

    summary = []
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        for path in sorted((root / "autograded").glob("*/*/*.ipynb")):
            student, assignment = path.parts[-3], path.parts[-2]
            messages = cell_messages(path)
            notebook = gb.find_submission_notebook(path.stem, assignment, student)
            rows = [f"# {assignment}: {student}", "", "| exercise | points | feedback |", "|---|---|---|"]
            for grade in sorted(notebook.grades, key=lambda g: g.name):
                if grade.max_score == 0:
                    continue
                text = messages.get(grade.name, "").replace("|", "\\|").replace("\n", " ")
                rows.append(
                    f"| {grade.name.removesuffix('_test')} | {grade.score:g}/{grade.max_score:g} | {text} |"
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
