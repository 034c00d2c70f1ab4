"""Chapter 01: each exercise's reference solution (from solutions/01_naive_cache.ipynb) passes its checks."""

from __future__ import annotations

import math
from pathlib import Path

import nbformat
import pytest
import torch

from autograder.harness import fresh

pytestmark = [pytest.mark.ch01, pytest.mark.autograder]
NOTEBOOK = Path(__file__).resolve().parents[1] / "solutions" / "01_naive_cache.ipynb"
EXERCISES = [
    ("ex1_causal_attention", "causal_attention", "causal_attention"),
    ("ex2_naive_cache", "NaiveKVCache", "naive_cache"),
    ("ex3_generate", "generate", "generate"),
    ("ex4_compare", "compare_cached_uncached", "compare"),
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
    checks = fresh("ch01")
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

    checks = fresh("ch01")
    with pytest.raises(AssertionError, match="not implemented"):
        getattr(checks, f"{prefix}_hidden")(Stub if name[0].isupper() else stub)


def test_test_cells_follow_the_contract():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    ids = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells if "nbgrader" in c.get("metadata", {})]
    assert ids == [x for gid, *_ in EXERCISES for x in (gid, gid + "_test")]
    graded = [c.metadata["nbgrader"] for c in nb.cells if "nbgrader" in c.get("metadata", {})]
    points = sum(meta.get("points", 0) for meta in graded)
    assert points == 10


MUTANTS = Path(__file__).resolve().parents[1] / "autograder" / "mutants" / "01_naive_cache"


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
            getattr(fresh("ch01"), f"{prefix}_hidden")(namespace[name])
        expected = header[1].split(":", 1)[1].strip().lower()
        assert expected in str(caught.value).lower(), f"{path.name}: {caught.value}"


def test_compare_checks_accept_a_solution_that_uses_model_methods():
    """The checks wrap the model to break its cached path; a correct solution that calls
    model.eval() or reads model.parameters() must still reach the real model."""
    reference = solution_namespace("ex4_compare")["compare_cached_uncached"]

    def compare_with_model_methods(model, prompt_ids, max_new_tokens, cache):
        model.eval()
        prompt_ids = prompt_ids.to(next(model.parameters()).device)
        return reference(model, prompt_ids, max_new_tokens, cache)

    checks = fresh("ch01")
    checks.compare_visible(compare_with_model_methods)
    checks.compare_hidden(compare_with_model_methods)
