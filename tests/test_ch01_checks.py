"""Chapter 01 specifics that tests/test_checks.py does not cover (it runs every solution, stub, mutant
and delegation form of every chapter): correct answers written differently still pass, the return types
the spec accepts, messages that must not mislead, what the visible tests alone catch, and the notebook's
fallback to kvlib's reference while an exercise is not implemented."""

from __future__ import annotations

import types
from pathlib import Path

import nbformat
import pytest
import torch

from autograder.harness import fresh, namespace_before, run_exercise, solution_sources

pytestmark = [pytest.mark.ch01, pytest.mark.autograder]
REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "solutions" / "01_naive_cache.ipynb"
MUTANTS = REPO / "autograder" / "mutants" / "01_naive_cache"
SOLUTIONS = solution_sources(NOTEBOOK)


def _fails(grade_id: str, source: str) -> str:
    with pytest.raises(AssertionError) as info:
        run_exercise(NOTEBOOK, grade_id, source)
    return str(info.value)


def _defined(grade_id: str, source: str, name: str):
    namespace = namespace_before(NOTEBOOK, grade_id)
    exec(compile(source, f"<{grade_id}>", "exec"), namespace)  # noqa: S102
    return namespace[name]


def test_test_cells_follow_the_contract():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    graded = [c.metadata["nbgrader"] for c in nb.cells if "nbgrader" in c.get("metadata", {})]
    exercises = ["ex1_causal_attention", "ex2_naive_cache", "ex3_generate", "ex4_compare"]
    assert [m["grade_id"] for m in graded] == [x for gid in exercises for x in (gid, gid + "_test")]
    assert sum(m.get("points", 0) for m in graded) == 10


def test_compare_accepts_a_solution_that_uses_model_methods(capsys) -> None:
    """The checks wrap the model to break its cached path; model.eval() and model.parameters() still work."""
    source = SOLUTIONS["ex4_compare"].replace(
        "    ids_c, logits_c = prompt_ids, []\n",
        "    model.eval()\n    prompt_ids = prompt_ids.to(next(model.parameters()).device)\n"
        "    ids_c, logits_c = prompt_ids, []\n",
    )
    assert source != SOLUTIONS["ex4_compare"]
    run_exercise(NOTEBOOK, "ex4_compare", source)
    assert "hidden tests passed" in capsys.readouterr().out


RETURN = "    return diff, bool(torch.equal(ids_c, ids_u))\n"


@pytest.mark.parametrize(
    "returned",
    [
        "    return numpy.float64(diff), numpy.bool_(torch.equal(ids_c, ids_u))\n",
        "    return torch.tensor(diff), (ids_c == ids_u).all()\n",
        "    return [diff, torch.equal(ids_c, ids_u)]\n",
    ],
    ids=["numpy-scalars", "tensor-scalars", "a-list"],
)
def test_compare_accepts_the_spellings_the_spec_allows(returned: str, capsys) -> None:
    source = "import numpy\n" + SOLUTIONS["ex4_compare"].replace(RETURN, returned)
    run_exercise(NOTEBOOK, "ex4_compare", source)
    assert "hidden tests passed" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        (
            "    return diff, int(torch.equal(ids_c, ids_u))\n",
            "must be a bool (True or False), got int",
        ),
        ("    return str(diff), torch.equal(ids_c, ids_u)\n", "must be a number (int or float), got str"),
        ("    return diff\n", "must return a pair"),
    ],
)
def test_compare_rejects_other_return_types_with_a_clear_message(returned: str, message: str) -> None:
    assert message in _fails("ex4_compare", SOLUTIONS["ex4_compare"].replace(RETURN, returned))


# --- messages that must not mislead ----------------------------------------------------------------


def test_reset_that_keeps_the_values_shows_the_values_shape() -> None:
    source = (MUTANTS / "ex2_naive_cache" / "reset_forgets_keys_only.py").read_text()
    message = _fails("ex2_naive_cache", source)
    assert "new values (shape (1, 2, 2, 3)), got values of shape (1, 2, 7, 3)" in message, message


def test_a_cache_with_class_level_storage_is_told_so_not_a_generic_shape_error() -> None:
    message = _fails("ex2_naive_cache", (MUTANTS / "ex2_naive_cache" / "class_level_lists.py").read_text())
    assert "already holds" in message and "class attributes" in message, message


# --- the visible tests alone catch the usual slips (batch > 1, an offset, a second call) -----------


@pytest.mark.parametrize(
    ("grade_id", "mutant", "name", "visible"),
    [
        ("ex1_causal_attention", "mask_without_offset", "causal_attention", "causal_attention_visible"),
        ("ex2_naive_cache", "one_shared_slot", "NaiveKVCache", "naive_cache_visible"),
        ("ex3_generate", "row0_choice_for_all_rows", "generate", "generate_visible"),
        ("ex3_generate", "argmax_without_dim", "generate", "generate_visible"),
        ("ex3_generate", "mutable_default_tokens", "generate", "generate_visible"),
        ("ex4_compare", "tokens_only", "compare_cached_uncached", "compare_visible"),
    ],
)
def test_visible_tests_catch_the_usual_slips(grade_id: str, mutant: str, name: str, visible: str) -> None:
    wrong = _defined(grade_id, (MUTANTS / grade_id / f"{mutant}.py").read_text(), name)
    with pytest.raises(AssertionError):
        getattr(fresh("ch01"), visible)(wrong)


# --- the notebook runs the learner's code after the exercises, kvlib's while it is not written -----


def _chooser_source() -> str:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    (cell,) = [c for c in nb.cells if c.cell_type == "code" and "Cache = yours_or_reference" in c.source]
    assert cell.metadata.get("kvlib", {}).get("display_only"), "the chooser feeds display cells only"
    return cell.source


def _run_chooser(cache_cls, generate_fn) -> dict:
    calls: list = []

    class ReferenceCache:
        def __init__(self, n):
            calls.append(("reference cache", n))

    def reference_generate(*args):
        calls.append("reference generate")

    namespace = {
        "torch": torch,
        "encode": lambda text: [1, 2, 3],
        "model": lambda ids, cache=None: calls.append(("model", type(cache).__name__)),
        "cfg": types.SimpleNamespace(num_layers=2),
        "dense": types.SimpleNamespace(NaiveKVCache=ReferenceCache),
        "reference_generation": types.SimpleNamespace(generate=reference_generate),
        "NaiveKVCache": cache_cls,
        "generate": generate_fn,
    }
    exec(compile(_chooser_source(), "<chooser>", "exec"), namespace)  # noqa: S102
    return namespace


def test_notebook_falls_back_to_the_reference_while_not_implemented(capsys) -> None:
    class Stub:
        def __init__(self, *args):
            raise NotImplementedError()

    def stub(*args):
        raise NotImplementedError()

    namespace = _run_chooser(Stub, stub)
    assert namespace["Cache"] is namespace["dense"].NaiveKVCache
    assert namespace["run_generate"] is namespace["reference_generation"].generate
    out = capsys.readouterr().out
    assert "your NaiveKVCache is not implemented yet" in out and "your generate is not implemented yet" in out


def test_notebook_uses_the_learners_code_once_it_runs(capsys) -> None:
    class Mine:
        def __init__(self, n):
            pass

    def mine(*args):
        return None

    namespace = _run_chooser(Mine, mine)
    assert namespace["Cache"] is Mine and namespace["run_generate"] is mine
    assert "using your NaiveKVCache" in capsys.readouterr().out
