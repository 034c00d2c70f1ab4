"""Build an nbgrader course directory from solutions/ and generate the learner notebooks.

nbgrader wants `source/<assignment>/<notebook>.ipynb`; our instructor notebooks live flat in
`solutions/`. Each notebook becomes its own assignment named after its stem
(`01_naive_cache/01_naive_cache.ipynb`), which is also the layout of classroom submissions.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

from . import notebook as nbk
from .paths import solutions_dir

CONFIG_TEMPLATE = Path(__file__).with_name("nbgrader_config.py")
COURSE_ID = "kv-cache-course"  # the template's; `instructor --course-id` overrides it
# What students' nbgrader needs to fetch and submit (nothing of the grading setup: that stays with you).
STUDENT_CONFIG = """\
# nbgrader configuration for the students of this course: on JupyterHub, install it for every user as
# /etc/jupyter/nbgrader_config.py (or each student's ~/.jupyter/nbgrader_config.py).
c = get_config()  # noqa: F821
c.CourseDirectory.course_id = {course_id!r}
"""
# What a chapter notebook is called (`01_naive_cache.ipynb`): the only files a release may delete as stale.
CHAPTER_NAME = re.compile(r"^\d\d_\w+\.ipynb$")


def require_folder(what: str, path: Path) -> Path:
    """`path` as a Path that is a folder or does not exist yet; NotADirectoryError naming it otherwise."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{what} must be a folder, got the existing file {str(path)!r}")
    return path


def make_course_dir(
    root: Path, solutions: Path | None = None, exchange: Path | None = None, course_id: str | None = None
) -> list[str]:
    """Lay out an nbgrader course in `root`; return the assignment names.

    With `exchange` (the folder nbgrader's release/fetch/submit/collect share) the course config names
    it, and `student_nbgrader_config.py` holds what every student's nbgrader needs to find the course.
    """
    solutions = solutions or solutions_dir()
    root = require_folder("the course folder", root)
    root.mkdir(parents=True, exist_ok=True)
    config = CONFIG_TEMPLATE.read_text()
    if course_id is not None:
        config += f"c.CourseDirectory.course_id = {course_id!r}\n"
    if exchange is not None:
        exchange_config = f"c.Exchange.root = {str(Path(exchange).resolve())!r}\n"
        config += exchange_config
        (root / "student_nbgrader_config.py").write_text(
            STUDENT_CONFIG.format(course_id=course_id or COURSE_ID) + exchange_config
        )
    (root / "nbgrader_config.py").write_text(config)
    names = []
    for path in sorted(solutions.glob("*.ipynb")):
        nb = nbk.with_fixed_cell_ids(nbk.read(path))
        target = root / "source" / path.stem / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)
        names.append(path.stem)
    return names


def nbgrader_env() -> dict[str, str]:
    """Environment for nbgrader subprocesses: this Python's bin/ on PATH, offline hub."""
    env = dict(os.environ)
    # nbgrader shells out to `alembic`, which lives next to this interpreter in the venv.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("MPLBACKEND", "Agg")
    return env


def nbgrader(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run one nbgrader command in the course directory (`env`: extra variables); raise with its output
    if it fails."""
    cmd = [sys.executable, "-m", "nbgrader", *args]
    env = {**nbgrader_env(), **(env or {})}
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[2:])} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def release(out_dir: Path, solutions: Path | None = None) -> list[Path]:
    """Regenerate the learner notebooks into `out_dir` (deterministic: same input, same bytes).

    Chapter notebooks in `out_dir` that no longer exist in the solutions are deleted; any other
    file there is left alone.
    """
    out_dir = require_folder("the release folder (--out)", out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix="kvcourse-release-") as tmp:
        root = Path(tmp)
        names = make_course_dir(root, solutions)
        for name in names:
            nbgrader(root, "generate_assignment", name, "--force", "--no-db")
            generated = nbformat.read(root / "release" / name / f"{name}.ipynb", as_version=4)
            target = out_dir / f"{name}.ipynb"
            nbformat.write(generated, target)
            written.append(target)
    expected = {p.name for p in written}
    for stale in out_dir.glob("*.ipynb"):
        if stale.name not in expected and CHAPTER_NAME.match(stale.name):
            stale.unlink()
    return written
