"""Chapter 03 check helpers, without a kernel: the notebook's solutions pass, every mutant fails with
a message that names its mistake, and the checks stay fast.

The solution sources are read from solutions/03_gqa.ipynb (markers stripped) and executed in a
namespace holding what the notebook's setup cell imports; mutants replace them one at a time.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import re
import time
from pathlib import Path

import nbformat
import pytest
import torch

from autograder.mutation import parse_header

pytestmark = [pytest.mark.ch03, pytest.mark.autograder]

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "solutions" / "03_gqa.ipynb"
MUTANTS = REPO / "autograder" / "mutants" / "03_gqa"

# grade_id -> (visible check, hidden check, name of the graded function)
EXERCISES = {
    "repeat_kv": ("repeat_kv_visible", "repeat_kv_hidden", "repeat_kv"),
    "grouped_attention_step": (
        "grouped_attention_step_visible",
        "grouped_attention_step_hidden",
        "grouped_attention_step",
    ),
    "convert_to_gqa": ("convert_to_gqa_visible", "convert_to_gqa_hidden", "convert_to_gqa"),
    "kv_bytes_per_token": ("kv_bytes_per_token_visible", "kv_bytes_per_token_hidden", "kv_bytes_per_token"),
    "gqa_saving_factor": ("saving_factor_visible", "saving_factor_hidden", "gqa_saving_factor"),
    "expand_latent": ("expand_latent_visible", "expand_latent_hidden", "expand_latent"),
}


def _base_namespace() -> dict:
    from kvlib.memory import ModelShape
    from kvlib.model import TinyDecoder

    return {"torch": torch, "math": math, "dataclasses": dataclasses, "TinyDecoder": TinyDecoder,
            "ModelShape": ModelShape}  # fmt: skip


def _solutions() -> dict[str, str]:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    out = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("solution"):
            src = re.sub(r"^\s*### (BEGIN|END) SOLUTION\s*$\n?", "", cell.source, flags=re.M)
            out[meta["grade_id"]] = src
    return out


def _checks():
    for name in [m for m in list(importlib.sys.modules) if m.startswith("autograder.checks")]:
        del importlib.sys.modules[name]
    return importlib.import_module("autograder.checks.ch03")


def _define(*sources: str) -> dict:
    ns = _base_namespace()
    for src in sources:
        exec(compile(src, "<cell>", "exec"), ns)  # noqa: S102 - the notebook's own cells
    return ns


def test_notebook_has_the_exercises_and_no_kvlib_in_solutions() -> None:
    solutions = _solutions()
    assert set(solutions) == set(EXERCISES)
    for grade_id, src in solutions.items():
        assert "kvlib" not in src, grade_id


@pytest.mark.parametrize("grade_id", list(EXERCISES))
def test_solution_passes_visible_and_hidden_checks_quickly(grade_id: str) -> None:
    visible, hidden, fn_name = EXERCISES[grade_id]
    solutions = _solutions()
    ns = _define(solutions["repeat_kv"], solutions[grade_id])
    checks = _checks()
    started = time.perf_counter()
    getattr(checks, visible)(ns[fn_name])
    getattr(checks, hidden)(ns[fn_name])
    assert time.perf_counter() - started < 30  # generous for a shared 2-core machine; ~1-4 s normally


@pytest.mark.parametrize("grade_id", list(EXERCISES))
def test_released_stub_fails_with_not_implemented(grade_id: str) -> None:
    _, hidden, fn_name = EXERCISES[grade_id]
    checks = _checks()

    def stub(*args, **kwargs):
        raise NotImplementedError()

    with pytest.raises(AssertionError, match="not implemented yet") as info:
        getattr(checks, hidden)(stub)
    assert type(info.value).__name__ == "CheckFailed"


def _mutant_params() -> list:
    return [
        pytest.param(grade_id, path, id=f"{grade_id}/{path.stem}")
        for grade_id in EXERCISES
        for path in sorted((MUTANTS / grade_id).glob("*.py"))
    ]


@pytest.mark.parametrize("grade_id", list(EXERCISES))
def test_at_least_four_mutants_per_exercise(grade_id: str) -> None:
    assert len(list((MUTANTS / grade_id).glob("*.py"))) >= 4


@pytest.mark.parametrize(("grade_id", "path"), _mutant_params())
def test_mutant_is_killed_with_a_message_naming_the_mistake(grade_id: str, path: Path) -> None:
    """Like `python -m autograder mutants`, without a kernel: the test cell fails, naming the mistake."""
    visible, hidden, fn_name = EXERCISES[grade_id]
    source = path.read_text()
    mistake, expect = parse_header(source)
    assert mistake and expect, f"{path.name} needs '# MISTAKE:' and '# EXPECT:' lines"
    assert "kvlib" not in source
    ns = _define(_solutions()["repeat_kv"], source)
    with pytest.raises(AssertionError) as info:  # CheckFailed of the freshly imported checks
        checks = _checks()  # as the test cell runs them: visible tests first, then hidden ones
        getattr(checks, visible)(ns[fn_name])
        getattr(checks, hidden)(ns[fn_name])
    assert type(info.value).__name__ == "CheckFailed", repr(info.value)
    assert expect.lower() in str(info.value).lower(), str(info.value)
