"""`python -m autograder COMMAND`: check, release, grade, mutants, instructor."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import notebook as nbk
from .paths import course_dir, instructor_notebook_for, mutants_dir, solutions_dir


def cmd_check(args) -> int:
    from .grading import check_notebook

    try:
        instructor = instructor_notebook_for(args.notebook)
        report = check_notebook(args.notebook, instructor, memory_mb=args.memory_mb)
    except (nbk.NotebookError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
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
            print(f"  warning: {error} (not your code: the notebook's own setup failed here)")
    return 0 if report.score == report.max_score else 1


def cmd_release(args) -> int:
    from .release import release

    for path in release(Path(args.out or course_dir())):
        print(f"wrote {path}")
    return 0


def cmd_mutants(args) -> int:
    from .mutation import mutants_command

    notebooks = [Path(n) for n in args.notebooks] or sorted(solutions_dir().glob("*.ipynb"))
    notebooks = [n if n.parent != Path(".") or n.exists() else solutions_dir() / n for n in notebooks]
    return mutants_command(notebooks, mutants_dir(), as_json=args.json)


def cmd_grade(args) -> int:
    from .classroom import grade_submissions

    summary = grade_submissions(Path(args.submissions), Path(args.out), course_root=args.course_dir)
    print(summary)
    return 0


def cmd_instructor(args) -> int:
    from .release import make_course_dir

    names = make_course_dir(Path(args.directory))
    print(f"nbgrader course in {args.directory} with assignments: {', '.join(names)}")
    print(
        "next: cd there, export JUPYTER_PATH=$PWD/jupyter, run nbgrader generate_assignment NAME (README)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check", help="self-check one learner notebook with the hidden tests")
    p.add_argument("notebook", type=Path)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--memory-mb", type=int, default=None, help="grading kernel memory cap (default 6144)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("release", help="regenerate course/ from solutions/ with nbgrader")
    p.add_argument("--out", default=None, help="output folder (default: course/)")
    p.set_defaults(func=cmd_release)

    p = sub.add_parser("mutants", help="run the mutation catalog; non-zero exit if a mutant survives")
    p.add_argument("notebooks", nargs="*", help="solution notebooks (default: all in solutions/)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_mutants)

    p = sub.add_parser(
        "grade", help="classroom: nbgrader autograde submitted/<student>/<assignment>/, CSV + feedback"
    )
    p.add_argument("submissions", help="a course folder holding submitted/, or the submitted/ folder itself")
    p.add_argument("--out", default="grades", help="where grades.csv and feedback/ go (default: ./grades)")
    p.add_argument(
        "--course-dir", default=None, help="keep the nbgrader course folder here (default: temporary)"
    )
    p.set_defaults(func=cmd_grade)

    p = sub.add_parser(
        "instructor", help="create an nbgrader course folder (source/, config) for nbgrader's own tools"
    )
    p.add_argument("directory")
    p.set_defaults(func=cmd_instructor)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
