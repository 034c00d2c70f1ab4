"""Chapter 09's generate_without_graph checks, beyond what tests/test_checks.py runs.

The hidden inputs must reach every sentence of the docstring (grad enabled and disabled, training
mode, batch > 1 with distinct rows, lengths past the visible ones, GQA, n_new = 0, a one-token prompt,
the model raising midway); the grader's graph detector must see what autograd saves however the model
is called; and the messages for mistakes that no mutant in autograder/mutants/ makes must name them.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from exercise_edits import edited_solution, failure_message

from autograder.checks.ch09 import hygiene as checks
from autograder.checks.fixtures import tiny_model
from autograder.harness import run_exercise
from kvlib.cache.dense import NaiveKVCache

pytestmark = [pytest.mark.ch09, pytest.mark.autograder, pytest.mark.usefixtures("one_torch_thread")]

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "solutions" / "09_interview.ipynb"
GID = "generate_without_graph"


def _edited(*edits: tuple[str, str]) -> str:
    return edited_solution(NOTEBOOK, GID, *edits)


def _message(*edits: tuple[str, str]) -> str:
    return failure_message(NOTEBOOK, GID, _edited(*edits))


def _solution() -> object:
    namespace = {"torch": torch, "NaiveKVCache": NaiveKVCache}
    exec(compile(_edited(), f"<{GID}>", "exec"), namespace)  # noqa: S102 - the instructor's solution cell
    return namespace[GID]


def test_solution_passes_and_grad_mode_is_left_on(capsys) -> None:
    started = time.perf_counter()
    run_exercise(NOTEBOOK, GID)
    assert time.perf_counter() - started < 10
    assert "hidden tests passed" in capsys.readouterr().out
    assert torch.is_grad_enabled()


def test_hidden_inputs_reach_every_sentence(capsys) -> None:
    solution, calls = _solution(), []

    def spy(model, input_ids, n_new):
        calls.append(
            {
                "B": input_ids.shape[0],
                "T": input_ids.shape[1],
                "N": n_new,
                "grad": torch.is_grad_enabled(),
                "training": model.training,
                "gqa": model.config.num_kv_heads != model.config.num_heads,
                "rows_differ": len({tuple(r.tolist()) for r in input_ids}) == input_ids.shape[0],
                "past_context": input_ids.shape[1] + n_new - 1 > model.config.max_seq_len,
            }
        )
        return solution(model, input_ids, n_new)

    checks.generate_without_graph_hidden(spy)
    assert "hidden tests passed" in capsys.readouterr().out
    assert {c["grad"] for c in calls} == {True, False}
    assert any(c["training"] and c["grad"] for c in calls) and any(
        c["training"] and not c["grad"] for c in calls
    )
    assert any(c["B"] > 2 and c["rows_differ"] for c in calls)
    assert all(c["rows_differ"] for c in calls)
    assert max(c["T"] for c in calls) > 33 and max(c["N"] for c in calls) > 33  # past the visible lengths
    assert any(c["gqa"] for c in calls)
    assert {c["grad"] for c in calls if c["N"] == 0} == {True, False}
    assert any(c["T"] == 1 and c["N"] == 1 for c in calls)
    assert sum(c["past_context"] for c in calls) == 1  # the model raises midway once


def test_every_hidden_case_has_distinct_greedy_rows() -> None:
    """Rows with the same tokens would let 'row 0's token for every row' pass."""
    for case in checks._hidden_cases():
        if case.B > 1 and case.N > 0:
            prompt = checks._prompt(case.model, case.B, case.T, case.seed)
            want = checks._reference(case.model, prompt, case.N)
            assert len({tuple(r.tolist()) for r in want}) == case.B, case.what


def test_watch_sees_saved_tensors_through_forward_and_call() -> None:
    model = tiny_model(0)
    prompt = torch.randint(0, 97, (2, 5))
    for use_forward in (False, True):
        watch = checks._Watch(model)
        cache = NaiveKVCache(model.config.num_layers)
        with torch.enable_grad(), watch.watching():
            run = model.forward if use_forward else model
            logits = run(prompt, cache=cache)
            run(logits[:, -1:].argmax(-1), cache=cache)
        assert [c.width for c in watch.calls] == [5, 1]
        assert all(c.saved > 0 for c in watch.calls)
        assert watch.calls[1].held_bytes > 0  # the prefill's graph, kept by the cache
        del logits, cache
        assert watch.held_bytes() == 0  # the graph dies with the cache
    watch = checks._Watch(model)
    with torch.no_grad(), watch.watching():
        model(prompt)
    assert [c.saved for c in watch.calls] == [0]


def test_input_changed_in_place() -> None:
    message = _message(
        ("    B = input_ids.shape[0]\n", "    B = input_ids.shape[0]\n    input_ids[:, 0] = 0\n")
    )
    assert "modified its input input_ids in place" in message


def test_row_zeros_token_for_every_row() -> None:
    message = _message(
        ("new[:, step] = logits[:, -1].argmax(dim=-1)", "new[:, step] = logits[0, -1].argmax(dim=-1)")
    )
    assert "row 0's tokens" in message


@pytest.mark.parametrize(("shift", "words"), [("+ 1", "one too high"), ("- 1", "one too low")])
def test_positions_off_by_one(shift: str, words: str) -> None:
    old = "positions = torch.arange(position, position + next_input.shape[1]"
    start = f"(position {shift} if step else 0)"
    message = _message((old, f"positions = torch.arange({start}, {start} + next_input.shape[1]"))
    assert words in message


def test_positions_not_advanced() -> None:
    message = _message(("position += next_input.shape[1]", "position = input_ids.shape[1]"))
    assert "same position" in message


def test_one_call_too_many() -> None:
    message = _message(
        (
            "            next_input = new[:, step : step + 1]  # [B, 1]: the token just chosen\n",
            "            next_input = new[:, step : step + 1]  # [B, 1]: the token just chosen\n"
            "        if n_new:\n"
            "            model(next_input, positions=torch.tensor([position]), cache=cache)\n",
        ),
    )
    assert "needs no forward" in message


def test_int32_ids() -> None:
    message = _message(
        ("new = input_ids.new_empty((B, n_new))", "new = input_ids.new_empty((B, n_new)).int()")
    )
    assert "must be torch.long" in message


def test_float_ids() -> None:
    message = _message(
        ("new = input_ids.new_empty((B, n_new))", "new = torch.zeros(B, n_new)"),
        ("next_input = new[:, step : step + 1]", "next_input = new[:, step : step + 1].long()"),
    )
    assert "dtype torch.float32" in message


def test_the_models_error_swallowed() -> None:
    message = _message(
        (
            "            logits = model(next_input, positions=positions, cache=cache)  # [B, T_in, V]\n",
            "            try:\n"
            "                logits = model(next_input, positions=positions, cache=cache)\n"
            "            except ValueError:\n"
            "                break\n",
        )
    )
    assert "let the model's error propagate" in message


def test_only_the_prefill_records_a_graph() -> None:
    graph_in_prefill = "            with torch.enable_grad() if step == 0 else torch.no_grad():\n"
    message = _message(("            logits = model(", graph_in_prefill + "                logits = model("))
    assert "the prefill recorded an autograd graph" in message


def test_returns_a_tensor_that_requires_grad() -> None:
    message = _message(("    return new\n", "    return new.float().requires_grad_()\n"))
    assert "requires grad" in message


def test_visible_tests_catch_the_commonest_slips() -> None:
    """No no_grad at all and set_grad_enabled(False) never restored fail in the visible tests already."""
    for old, new in (
        ("    with torch.no_grad():  # restores", "    if True:  # restores"),
        (
            "    with torch.no_grad():  # restores",
            "    torch.set_grad_enabled(False)\n    if True:  # restores",
        ),
    ):
        namespace = {"torch": torch, "NaiveKVCache": NaiveKVCache}
        exec(compile(_edited((old, new)), f"<{GID}>", "exec"), namespace)  # noqa: S102
        try:
            with pytest.raises(AssertionError):
                checks.generate_without_graph_visible(namespace[GID])
        finally:
            torch.set_grad_enabled(True)


def test_prefill_positions_not_from_zero() -> None:
    old = "positions = torch.arange(position, position + next_input.shape[1]"
    message = _message((old, "positions = torch.arange(position + 1, position + 1 + next_input.shape[1]"))
    assert "the prefill must use positions 0..4" in message


def test_positions_per_row_and_left_to_the_model_are_fine(capsys) -> None:
    old = "logits = model(next_input, positions=positions, cache=cache)"
    for new in (
        "logits = model(next_input, positions=positions.expand(B, -1), cache=cache)",  # [B, T] positions
        "logits = model(next_input, cache=cache)",  # the model's default: the cache's length
        "logits = model.forward(next_input, positions=positions, cache=cache)",  # hooks on model skipped
    ):
        run_exercise(NOTEBOOK, GID, _edited((old, new)))
        assert "hidden tests passed" in capsys.readouterr().out
