"""Chapter 02: each exercise's reference solution (from solutions/02_memory.ipynb) passes its checks."""

from __future__ import annotations

import math
import os
from pathlib import Path

import nbformat
import pytest
import torch

from autograder.harness import fresh

pytestmark = [pytest.mark.ch02, pytest.mark.autograder]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
NOTEBOOK = Path(__file__).resolve().parents[1] / "solutions" / "02_memory.ipynb"
EXERCISES = [
    ("ex1_kv_bytes", "kv_cache_bytes", "kv_bytes"),
    ("ex2_cache_bytes", "cache_bytes", "cache_bytes"),
    ("ex3_static_cache", "StaticKVCache", "static_cache"),
    ("ex4_interview", "interview_answers", "interview"),
    ("ex5_find_error", "find_the_errors", "find_errors"),
]


def solution_namespace(grade_id: str) -> dict:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cells = [c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id]
    assert len(cells) == 1, f"{grade_id} must be exactly one cell"
    assert "kvlib" not in cells[0].source, "solution cells must not mention kvlib"
    namespace = {"torch": torch, "math": math}
    exec(compile(cells[0].source, grade_id, "exec"), namespace)
    return namespace


@pytest.mark.parametrize("grade_id,name,prefix", EXERCISES)
def test_reference_passes_visible_and_hidden(grade_id, name, prefix, capsys):
    fn = solution_namespace(grade_id)[name]
    checks = fresh("ch02")
    getattr(checks, f"{prefix}_visible")(fn)
    getattr(checks, f"{prefix}_hidden")(fn)
    assert "hidden tests passed" in capsys.readouterr().out


@pytest.mark.parametrize("grade_id,name,prefix", EXERCISES)
def test_not_implemented_scores_zero_with_a_message(grade_id, name, prefix):
    def stub(*args, **kwargs):
        raise NotImplementedError()

    class Stub:
        def __init__(self, *args, **kwargs):
            raise NotImplementedError()

    checks = fresh("ch02")
    with pytest.raises(AssertionError, match="not implemented"):
        getattr(checks, f"{prefix}_hidden")(Stub if name[0].isupper() else stub)


def test_test_cells_follow_the_contract():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    ids = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells if "nbgrader" in c.get("metadata", {})]
    assert ids == [x for gid, *_ in EXERCISES for x in (gid, gid + "_test")]
    graded = [c.metadata["nbgrader"] for c in nb.cells if "nbgrader" in c.get("metadata", {})]
    points = sum(meta.get("points", 0) for meta in graded)
    assert points == 10


MUTANTS = Path(__file__).resolve().parents[1] / "autograder" / "mutants" / "02_memory"


@pytest.mark.parametrize("grade_id,name,prefix", EXERCISES)
def test_every_mutant_is_caught_with_a_message_naming_it(grade_id, name, prefix):
    files = sorted((MUTANTS / grade_id).glob("*.py"))
    assert len(files) >= 4, f"{grade_id} needs at least four mutants"
    for path in files:
        source = path.read_text()
        header = source.splitlines()
        assert header[0].startswith("# MISTAKE:") and header[1].startswith("# EXPECT:"), path.name
        assert "kvlib" not in source, path.name
        namespace = {"torch": torch, "math": math}
        exec(compile(source, str(path), "exec"), namespace)
        with pytest.raises(AssertionError) as caught:
            getattr(fresh("ch02"), f"{prefix}_hidden")(namespace[name])
        expected = header[1].split(":", 1)[1].strip().lower()
        assert expected in str(caught.value).lower(), f"{path.name}: {caught.value}"
