"""Shared test setup: offline Hugging Face, headless matplotlib, repo paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]
SOLUTIONS = REPO / "solutions"
COURSE = REPO / "course"


def solution_notebooks() -> list[Path]:
    return sorted(SOLUTIONS.glob("*.ipynb"))


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
