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


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module that runs the shipped model: a 5M-parameter model gains nothing
    from two, and on a shared 2-core machine two threads wait on each other (2.6 s against 19.6 s for
    one 256-token generate, measured). Use with ``pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
