"""Where the course lives: the repository root, its solutions/ and course/ folders."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def solutions_dir() -> Path:
    """The instructor notebooks (override with KVCOURSE_SOLUTIONS for a relocated course)."""
    return Path(os.environ.get("KVCOURSE_SOLUTIONS", REPO_ROOT / "solutions"))


def course_dir() -> Path:
    return REPO_ROOT / "course"


def mutants_dir() -> Path:
    return Path(__file__).resolve().parent / "mutants"


def instructor_notebook_for(learner_path: Path) -> Path:
    """The instructor source of a learner notebook, matched by file name."""
    candidate = solutions_dir() / Path(learner_path).name
    if not candidate.exists():
        known = ", ".join(sorted(p.name for p in solutions_dir().glob("*.ipynb"))) or "none"
        raise FileNotFoundError(
            f"no instructor notebook named {Path(learner_path).name!r} in {solutions_dir()} (known: {known})"
        )
    return candidate
