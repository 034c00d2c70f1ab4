"""`python -m autograder COMMAND`: check, release, grade, mutants, instructor."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from . import notebook as nbk
from .paths import course_dir, instructor_notebook_for, mutants_dir, solutions_dir
from .sandbox_kernel import DEFAULT_MEMORY_MB

# Every chapter's solutions grade at 512 MiB (torch alone needs about 300): half that headroom again
# for later chapters and CUDA; below it a check would end in a dead kernel, not a grade.
MIN_MEMORY_MB = 1024


def memory_mb_arg(text: str) -> int:
    """argparse type of --memory-mb: an integer number of MiB, at least MIN_MEMORY_MB."""
    expected = f"an integer number of MiB >= {MIN_MEMORY_MB} (default {DEFAULT_MEMORY_MB})"
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if number < MIN_MEMORY_MB:
        raise argparse.ArgumentTypeError(
            f"expected {expected}, got {number}: the grading kernel needs about 512 MiB for torch and "
            "a chapter's model"
        )
    return number


def jobs_arg(text: str) -> int:
    """argparse type of --jobs: a whole number of parallel gradings, at least 1."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of parallel gradings >= 1, got {text!r}")
    return int(text)


def notebook_file_arg(text: str) -> Path:
    """argparse type of a notebook to read: an existing .ipynb file (not a folder)."""
    path = Path(text)
    if path.suffix != ".ipynb":
        raise argparse.ArgumentTypeError(f"expected a .ipynb notebook file, got {text!r}")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"expected a .ipynb notebook file, got the folder {text!r}")
    if not path.exists() and path.parent == Path(".") and (solutions_dir() / path).exists():
        return path  # `mutants 01_naive_cache.ipynb` names a notebook in solutions/
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such notebook: {text!r}")
    return path


def folder_arg(text: str) -> Path:
    """argparse type of an output folder: it may exist, but not as a file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"expected a folder, got the existing file {text!r}")
    return path


def fail(message: object) -> int:
    """One line on stderr and exit status 2: the input cannot be graded, which is not a score."""
    print(f"error: {message}", file=sys.stderr)
    return 2


def cmd_check(args) -> int:
    from .grading import check_notebook
    from .kernel import KernelUnavailable

    try:
        instructor = instructor_notebook_for(args.notebook)
        report = check_notebook(args.notebook, instructor, memory_mb=args.memory_mb)
    except (nbk.NotebookError, FileNotFoundError, KernelUnavailable) as exc:
        return fail(exc)
    if args.json:
        print(json.dumps(report.as_dict(), indent=1))
    else:
        print(f"{report.notebook}: {report.score:g} / {report.max_score:g} points  ({report.seconds:.1f} s)")
        for ex in report.exercises:
            mark = "ok  " if ex.score == ex.max_score else "FAIL"
            print(f"  {mark} {ex.grade_id:<28} {ex.score:g}/{ex.max_score:g}")
            if ex.message:
                print(f"       {ex.message}")
        for error in report.setup_errors:
            print(f"  warning: {error}")
    return 0 if report.score == report.max_score else 1


def cmd_release(args) -> int:
    from .release import release

    for path in release(args.out or course_dir()):
        print(f"wrote {path}")
    return 0


def cmd_mutants(args) -> int:
    from .mutation import BaselineFailed, mutants_command

    notebooks = list(args.notebooks) or sorted(solutions_dir().glob("*.ipynb"))
    notebooks = [n if n.parent != Path(".") or n.exists() else solutions_dir() / n for n in notebooks]
    try:
        return mutants_command(notebooks, mutants_dir(), as_json=args.json)
    except nbk.NotebookError as exc:
        return fail(exc)
    except BaselineFailed as exc:
        return fail(f"{exc} (mutants run on complete solution notebooks, as in solutions/)")


def cmd_grade(args) -> int:
    from .classroom import grade_submissions

    try:
        summary = grade_submissions(
            Path(args.submissions), args.out, course_root=args.course_dir, jobs=args.jobs
        )
    # RuntimeError: an nbgrader step for the whole course failed (its output follows), or feedback leaked
    except (FileNotFoundError, NotADirectoryError, ValueError, RuntimeError, nbk.NotebookError) as exc:
        return fail(exc)
    print(summary)
    return 1 if summary.failed else 0


def cmd_instructor(args) -> int:
    from .release import make_course_dir

    directory = Path(args.directory)
    if directory.exists() and not directory.is_dir():
        return fail(f"{directory}: is a file; the instructor command creates a new course folder there")
    if directory.is_dir() and any(directory.iterdir()):
        # make_course_dir overwrites source/ and the config: never over someone's existing course
        return fail(f"{directory}: folder exists and is not empty; choose a new or empty folder")
    if args.course_id is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", args.course_id):
        return fail(
            f"--course-id must be letters, digits, '_', '.' or '-' (a folder name), got {args.course_id!r}"
        )
    if args.exchange is not None:
        problem = exchange_problem(args.exchange)
        if problem:
            return fail(problem)
    names = make_course_dir(directory, exchange=args.exchange, course_id=args.course_id)
    print(f"nbgrader course in {directory} with assignments: {', '.join(names)}")
    if args.exchange is not None:
        print(
            f"students' nbgrader config (install as /etc/jupyter/nbgrader_config.py): "
            f"{directory / 'student_nbgrader_config.py'}"
        )
    print(f"next: cd {directory} && nbgrader generate_assignment 01_naive_cache (README: For instructors)")
    return 0


def exchange_problem(exchange: Path) -> str:
    """Why nbgrader's exchange would fail at `exchange`, or "": it must exist and be writable by everyone
    (release_assignment run as root would otherwise create it silently; as anyone else it fails)."""
    fix = f"as an administrator: sudo mkdir -p {exchange} && sudo chmod 777 {exchange}"
    if not exchange.is_dir():
        return f"--exchange {exchange}: no such folder; create it first, {fix}"
    mode = exchange.stat().st_mode & 0o777
    if mode != 0o777:
        return (
            f"--exchange {exchange}: its permissions are {mode:o}, nbgrader needs 777 (every student writes "
            f"there, and nbgrader refuses or changes other modes); {fix}"
        )
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check", help="self-check one learner notebook with the hidden tests")
    p.add_argument("notebook", type=notebook_file_arg)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument(
        "--memory-mb",
        type=memory_mb_arg,
        default=None,
        help=f"grading kernel memory cap in MiB, at least {MIN_MEMORY_MB} (default {DEFAULT_MEMORY_MB})",
    )
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("release", help="regenerate course/ from solutions/ with nbgrader")
    p.add_argument("--out", type=folder_arg, default=None, help="output folder (default: course/)")
    p.set_defaults(func=cmd_release)

    p = sub.add_parser("mutants", help="run the mutation catalog; non-zero exit if a mutant survives")
    p.add_argument(
        "notebooks", nargs="*", type=notebook_file_arg, help="solution notebooks (default: all in solutions/)"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_mutants)

    p = sub.add_parser(
        "grade", help="classroom: nbgrader autograde submitted/<student>/<assignment>/, CSV + feedback"
    )
    p.add_argument(
        "submissions",
        help="your course folder (made by `instructor`; graded in place), or a folder holding submitted/",
    )
    p.add_argument(
        "--out",
        type=folder_arg,
        default=None,
        help="where grades.csv and feedback/ go (default: the course folder's grades/, else ./grades)",
    )
    p.add_argument(
        "--course-dir",
        type=folder_arg,
        default=None,
        help="for a bare submitted/ folder: make the nbgrader course folder here (default: temporary)",
    )
    p.add_argument(
        "--jobs",
        type=jobs_arg,
        default=1,
        help="submissions graded at once, each in its own kernel of up to 6 GiB (default 1)",
    )
    p.set_defaults(func=cmd_grade)

    p = sub.add_parser(
        "instructor", help="create an nbgrader course folder (source/, config) for nbgrader's own tools"
    )
    p.add_argument("directory")
    p.add_argument(
        "--exchange",
        type=Path,
        default=None,
        help="the nbgrader exchange folder shared with students (JupyterHub); default: none, use your LMS",
    )
    p.add_argument("--course-id", default=None, help="nbgrader course id (default kv-cache-course)")
    p.set_defaults(func=cmd_instructor)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
