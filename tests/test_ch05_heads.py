"""Chapter 05's distant_attention checks, beyond what tests/test_checks.py runs.

The hidden check compares by value; these tests hold its inputs to what the docstring needs (real causal
softmax weights, every batch row and head different, a tiny model's GQA weights, the shortest T, num_sinks 0,
window 1, GQA ratios 1, 2 and 4, float16, bfloat16 and float64 at T = 512), check that the float64 variants
behind the diagnoses are right (the correct one equals kvlib's, each wrong one differs on the visible case),
that the tolerance passes float32 prefix sums but fails float16 sums, and the messages no mutant reaches:
a result of the wrong type or shape, a float64 result, NaN, zeros, the window placed at the end.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from exercise_edits import edited_solution, failure_message

from autograder.checks.ch05 import heads
from autograder.harness import run_exercise

pytestmark = [pytest.mark.ch05, pytest.mark.autograder]

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "solutions" / "05_eviction.ipynb"
GRADE_ID = "distant_attention"


def _edited(*edits: tuple[str, str]) -> str:
    return edited_solution(NOTEBOOK, GRADE_ID, *edits)


def _message(source: str) -> str:
    return failure_message(NOTEBOOK, GRADE_ID, source)


def _loops(weights, num_kv_heads, num_sinks, window):
    """Written from the docstring, one query head and one query at a time, in float64."""
    B, H, T, _ = weights.shape
    G = H // num_kv_heads
    out = torch.zeros(num_kv_heads, dtype=torch.float64)
    for h in range(H):
        per_query = [
            weights[:, h, p, num_sinks : p - window].double().sum(-1)
            for p in range(num_sinks + window + 1, T)
        ]
        out[h // G] += torch.stack(per_query).mean() / G
    return out.float()


# --- the inputs ------------------------------------------------------------------------------------------


def test_random_weights_are_causal_softmax_rows_that_differ_by_row_and_head():
    w = heads.causal_weights(3, 4, 24, seed=0, dtype=torch.float64)
    T = w.shape[-1]
    assert torch.equal(w.triu(1), torch.zeros_like(w)), "zero past the diagonal"
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 4, T, dtype=torch.float64))
    lost = heads._score(w, 4, 2, 3, batch="first")  # one number per head, row 0
    assert lost.max() - lost.min() > 0.1, "heads must differ a lot: a wrong grouping changes the answer"
    assert not torch.allclose(w[0], w[1]) and not torch.allclose(w[1], w[2])
    assert w[..., 2:3, :2].sum() > 0.1 * w[..., 2:3, :].sum(), "the sink-like first keys carry weight"


def test_model_weights_are_causal_gqa_rows_from_observe_attention():
    layers = heads.model_weights(3, 40, num_heads=4, num_kv_heads=2, seed=5)
    assert len(layers) == 2
    for w in layers:
        assert w.shape == (3, 4, 40, 40) and w.dtype == torch.float32
        assert torch.equal(w.triu(1), torch.zeros_like(w))
        torch.testing.assert_close(w.sum(-1), torch.ones(3, 4, 40))
        assert not torch.allclose(w[0], w[1])
        assert not torch.allclose(w[:, 0], w[:, 1])  # heads of one group differ: the mean over G matters


# --- the reference and the variants ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "B,H,KV,T,S,W,dtype",
    [
        (3, 4, 2, 24, 2, 3, torch.float32),
        (2, 8, 2, 9, 0, 1, torch.float16),
        (1, 3, 3, 8, 4, 2, torch.bfloat16),
        (2, 4, 1, 40, 1, 6, torch.float64),
    ],
)
def test_the_float64_score_and_the_reference_agree_with_loops(B, H, KV, T, S, W, dtype):
    w = heads.causal_weights(B, H, T, seed=T, dtype=dtype)
    want = _loops(w, KV, S, W)
    torch.testing.assert_close(heads.reference(w, KV, S, W), want, rtol=2e-7, atol=1e-8)
    torch.testing.assert_close(heads._score(w, KV, S, W).float(), want, rtol=2e-7, atol=1e-8)


def test_every_variant_differs_from_the_answer_on_the_visible_case():
    w = heads.causal_weights(3, 4, 24, seed=0)
    want = heads.reference(w, 2, 2, 3).double()
    scale = want.abs().max().item()
    for message, candidate in heads._variants(w, 2, 2, 3).items():
        if "1 - (the weight" in message:  # float32 rows sum to one: only low precision tells it apart
            assert (candidate - want).abs().max() < 1e-6, message
            continue
        if "not 0" in message:  # no random weight is exactly 0: the hidden case of queries losing 0 tells
            assert (candidate - want).abs().max() < 1e-6, message
            continue
        assert (candidate - want).abs().max() > 100 * heads.RTOL * scale, message


def test_variants_differ_from_each_other_on_the_visible_case():
    w = heads.causal_weights(3, 4, 24, seed=0)
    values = [
        v for m, v in heads._variants(w, 2, 2, 3).items() if "1 - (the weight" not in m and "not 0" not in m
    ]
    for i, a in enumerate(values):
        for b in values[i + 1 :]:
            assert (a - b).abs().max() > 1e-4


# --- what the hidden check covers -------------------------------------------------------------------------


def test_the_hidden_check_reaches_every_edge_case_the_docstring_names():
    calls = []

    def recording(weights, num_kv_heads, num_sinks, window):
        calls.append((tuple(weights.shape), weights.dtype, num_kv_heads, num_sinks, window))
        B, H, T, _ = weights.shape
        p, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
        lost = (weights.double() * ((j >= num_sinks) & (j < p - window))).sum(-1)[
            ..., num_sinks + window + 1 :
        ]
        return lost.reshape(B, num_kv_heads, -1).mean(-1).mean(0).float()

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as run_exercise does: small tensors, a shared machine
    try:
        heads.distant_attention_hidden(recording)
    finally:
        torch.set_num_threads(threads)
    shortest = {(S, W) for (B, H, T, _), _, KV, S, W in calls if T == S + W + 2}
    assert len(shortest) >= 3 and (0, 1) in shortest, shortest
    assert {H // KV for (_, H, _, _), _, KV, _, _ in calls} >= {1, 2, 4}
    assert any(KV == 1 for _, _, KV, _, _ in calls)
    assert any(S == 0 for *_, S, _ in calls) and any(W == 1 for *_, W in calls)
    assert {dtype for _, dtype, *_ in calls} == {torch.float32, torch.float16, torch.bfloat16, torch.float64}
    long = {dtype for (_, _, T, _), dtype, *_ in calls if T >= 512}
    assert long >= {torch.float16, torch.bfloat16, torch.float64}
    assert all(B > 1 for (B, *_), *_ in calls[:2]), "the visible cases have batch > 1"
    assert any(B > 1 and H != KV for (B, H, _, _), _, KV, _, _ in calls[:2])
    by_length = {}
    for (_, _, T, _), _, _, S, W in calls:
        by_length.setdefault(T, set()).add((S, W))
    assert max(len(v) for v in by_length.values()) >= 4, "one T with several sinks and windows in a row"


# --- messages no mutant reaches ---------------------------------------------------------------------------

_LOOP = "lost[:, :, p - first] = weights[:, :, p, num_sinks : p - window].float().sum(-1)"
_RETURN = "return lost.reshape(B, num_kv_heads, G, T - first).mean(dim=(0, 2, 3))"


def test_float32_prefix_sums_pass():
    source = _edited(
        ("    for p in range(first, T):\n        " + _LOOP + "\n", ""),
        (
            _RETURN,
            "c = weights.float().cumsum(-1)  # keys 0 .. j\n"
            "    p = torch.arange(first, T)\n"
            "    lost = c[:, :, p, p - window - 1] - (c[:, :, p, num_sinks - 1] if num_sinks else 0)\n    "
            + _RETURN,
        ),
    )
    run_exercise(NOTEBOOK, GRADE_ID, source)


def test_sums_rounded_to_float16_fail_naming_the_precision():
    message = _message(_edited((".float().sum(-1)", ".sum(-1)")))  # each query's sum in the input dtype
    assert "lost digits" in message and "float32" in message, message


def test_a_float64_result_must_be_float32():
    message = _message(_edited((_RETURN, _RETURN.replace("return lost", "return lost.double()"))))
    assert "must return float32" in message and "torch.float64" in message, message


def test_a_list_and_a_per_query_head_score_are_named():
    assert "must return a torch.Tensor, got list" in _message(_edited((_RETURN, _RETURN + ".tolist()")))
    message = _message(_edited((_RETURN, "return lost.mean(dim=(0, 2))")))
    assert "one score per query head" in message and "G = 2" in message, message
    message = _message(_edited((_RETURN, "return lost.mean()")))
    assert "not a single number" in message, message


def test_nan_zeros_and_the_window_at_the_end_are_named():
    assert "not finite" in _message(_edited((_RETURN, "return " + _RETURN[7:] + " * float('nan')")))
    transposed = _LOOP.replace(
        "weights[:, :, p, num_sinks : p - window]", "weights[:, :, num_sinks : p - window, p]"
    )
    message = _message(_edited((_LOOP, transposed)))
    assert "you returned zeros" in message and "weights[..., j, p]" in message, message
    message = _message(_edited((_LOOP, _LOOP.replace("p - window]", "T - window]"))))
    assert "end of the sequence" in message, message


def test_a_sum_over_the_batch_is_named():
    message = _message(
        _edited((_RETURN, "return lost.reshape(B, num_kv_heads, G, T - first).mean(dim=(2, 3)).sum(0)"))
    )
    assert "summed over the B batch rows" in message, message


def test_an_unrecognised_wrong_answer_gets_the_recipe():
    message = _message(_edited((_RETURN, _RETURN + " * 1.01")))
    assert "is wrong (max abs error" in message and "num_sinks <= j < p - window" in message, message
