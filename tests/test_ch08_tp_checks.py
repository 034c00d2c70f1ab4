"""Chapter 08's kv_bytes_per_gpu checks, beyond what tests/test_checks.py runs.

The grader's own split rule must be kvlib's (every model of MODEL_CONFIGS, tp far past 16, hand-made
shapes); the hidden inputs must reach every sentence of the docstring (each ValueError rule, a KV head
copied, every dtype spelling, batch > 1, lengths past the visible ones, the defaults); and the messages
for mistakes no mutant in autograder/mutants/ makes must name them.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import pytest
import torch
from exercise_edits import edited_solution, failure_message

from autograder.checks.ch08 import tp as checks
from autograder.harness import run_exercise
from kvlib.memory import MODEL_CONFIGS, ModelShape, kv_bytes_per_gpu, kv_cache_bytes, kv_heads_per_gpu

pytestmark = [pytest.mark.ch08, pytest.mark.autograder]

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "solutions" / "08_serving.ipynb"
GID = "kv_bytes_per_gpu"

HAND_MADE = [
    checks._hand_made(12, 3),
    checks._hand_made(12, 4),
    checks._hand_made(12, 6),
    checks._hand_made(24, 6, 3, 80),
    checks._hand_made(16, 1, 2, 128),
    checks._hand_made(30, 5, 5, 96),
    checks._hand_made(6, 3, 3, 5),
]


def _edited(*edits: tuple[str, str]) -> str:
    return edited_solution(NOTEBOOK, GID, *edits)


@pytest.mark.parametrize("shape", [*MODEL_CONFIGS.values(), *HAND_MADE], ids=lambda s: s.name)
def test_split_rule_is_kvlibs(shape: ModelShape) -> None:
    for tp in range(-3, 300):
        heads, why = checks._split(shape, tp)
        if heads is None:
            with pytest.raises(ValueError):
                kv_heads_per_gpu(shape, tp)
        else:
            assert kv_heads_per_gpu(shape, tp) == heads, (tp, why)
            assert checks._bytes(shape, heads, 77, 3, "int4") == kv_bytes_per_gpu(shape, tp, 77, 3, "int4")


def _spy() -> tuple[list[tuple], object]:
    """A correct learner answer (it calls kv_cache_bytes, as the docstring invites) that records each call."""
    calls: list[tuple] = []

    def kv_bytes(shape, tp, seq_len, batch=1, dtype=torch.float16):
        kv = shape.num_kv_heads
        ok = tp >= 1 and shape.num_heads % tp == 0 and (kv % tp == 0 if tp <= kv else tp % kv == 0)
        calls.append((shape, tp, seq_len, batch, dtype, ok))
        if not ok:
            raise ValueError("uneven split")
        return kv_cache_bytes(shape.num_layers, max(1, kv // tp), shape.head_dim, seq_len, batch, dtype)

    return calls, kv_bytes


def test_hidden_inputs_reach_every_sentence(capsys) -> None:
    calls, spy = _spy()
    started = time.perf_counter()
    checks.kv_bytes_per_gpu_hidden(spy)
    assert time.perf_counter() - started < 5
    assert "hidden tests passed" in capsys.readouterr().out
    valid = [c for c in calls if c[5]]
    # every model of the table, split at every tp 1..16 that is valid for it, and past 16
    for shape in MODEL_CONFIGS.values():
        tps = {c[1] for c in calls if c[0] is shape}
        assert set(range(1, 17)) <= tps, shape.name
        assert any(tp > 16 for tp in tps), shape.name
    # the four ValueError rules, one at a time
    reasons = {checks._split(c[0], c[1])[1].split(", ")[0].split(" is ")[0] for c in calls if not c[5]}
    rules = {
        "tp < 1": any(c[1] < 1 for c in calls),
        "query heads": any(c[1] >= 1 and c[0].num_heads % c[1] for c in calls),
        "KV heads not divided": any(
            c[1] >= 1 and not c[0].num_heads % c[1] and c[1] <= c[0].num_kv_heads and c[0].num_kv_heads % c[1]
            for c in calls
        ),
        "not a multiple": any(
            c[1] >= 1 and not c[0].num_heads % c[1] and c[1] > c[0].num_kv_heads and c[1] % c[0].num_kv_heads
            for c in calls
        ),
        # a multiple of the KV heads but not a divisor of the query heads (only the query rule catches it)
        "query heads only": any(
            c[1] > c[0].num_kv_heads and not c[1] % c[0].num_kv_heads and c[0].num_heads % c[1] for c in calls
        ),
        "tp = 0": any(c[1] == 0 for c in calls),
    }
    assert all(rules.values()), (rules, reasons)
    # a KV head copied (GQA and MQA), heads split, and hand-made shapes with 3 and 5 KV heads copied
    assert any(c[1] > c[0].num_kv_heads and c[0].num_kv_heads == 1 for c in valid)
    assert any(c[1] > c[0].num_kv_heads and c[0].num_kv_heads % 2 for c in valid)
    assert any(1 < c[1] < c[0].num_kv_heads for c in valid)
    # every dtype spelling, by torch dtype and by name, and a packed int2 count that is rounded up
    dtypes = {c[4] for c in valid}
    for dtype in ("fp16", "bf16", "int8", "int4", "int2", torch.float16, torch.bfloat16, torch.int8):
        assert dtype in dtypes, dtype
    odd = [c for c in valid if c[4] == "int2"]
    assert any(c[0].num_layers * c[0].head_dim * c[2] * c[3] % 2 for c in odd)
    # batch > 1, lengths past the visible 4096, one token, defaults and keywords used
    assert (
        any(c[3] > 4 for c in valid) and any(c[2] > 100_000 for c in valid) and any(c[2] == 1 for c in valid)
    )


def test_visible_checks_are_quick_and_cover_gqa_and_batch(capsys) -> None:
    calls, spy = _spy()
    started = time.perf_counter()
    checks.kv_bytes_per_gpu_visible(spy)
    assert time.perf_counter() - started < 1
    assert "visible tests passed" in capsys.readouterr().out
    valid = [c for c in calls if c[5]]
    assert any(c[3] > 1 for c in valid)
    assert any(c[0].num_heads != c[0].num_kv_heads for c in valid)
    assert any(c[1] > c[0].num_kv_heads for c in valid)  # the copy rule, visible
    assert any(not c[5] for c in calls)


@pytest.mark.parametrize(
    ("edits", "expected"),
    [
        pytest.param(
            [("shape.head_dim, seq_len, batch, dtype)", "shape.head_dim, 1, batch, dtype)")],
            "seq_len is ignored",
            id="seq_len_ignored",
        ),
        pytest.param(
            [("kv_cache_bytes(shape.num_layers, heads_per_gpu", "kv_cache_bytes(1, heads_per_gpu")],
            "one layer only",
            id="one_layer",
        ),
        pytest.param(
            [
                (
                    "heads_per_gpu = kv // tp if tp <= kv else 1",
                    "heads_per_gpu = kv // tp + 1 if tp <= kv else 1",
                )
            ],
            "KV heads per GPU",
            id="unnamed_wrong_value",
        ),
        pytest.param(
            [("dtype=torch.float16) -> int:", "dtype=torch.float32) -> int:")],
            "left to their defaults",
            id="default_dtype",
        ),
        pytest.param([("batch: int = 1", "batch: int = 2")], "left to their defaults", id="default_batch"),
        pytest.param(
            [
                ("return kv_cache_bytes(", "return torch.tensor(kv_cache_bytes("),
                ("batch, dtype)\n", "batch, dtype))\n"),
            ],
            "must be a Python int",
            id="tensor",
        ),
        pytest.param([("return kv_cache_bytes(", "kv_cache_bytes(")], "must be a number", id="no_return"),
        pytest.param(
            [('raise ValueError(f"tp={tp} does not divide', 'raise RuntimeError(f"tp={tp} does not divide')],
            "must raise ValueError (tp=2 does not divide the 3 KV heads",
            id="runtime_error",
        ),
        pytest.param([("if tp < 1 or", "if tp < 0 or")], "check tp < 1", id="tp_zero_allowed"),
        pytest.param(
            [("if tp <= kv and kv % tp:", "if False:")],
            "does not divide the 3 KV heads",
            id="kv_divisor_unchecked",
        ),
        pytest.param(
            [("if tp > kv and tp % kv:", "if False:")], "not a multiple of them", id="kv_multiple_unchecked"
        ),
        pytest.param(
            [("if tp > kv and tp % kv:", "if tp > kv and tp % kv or tp > 2 * kv:")],
            "but the split is valid",
            id="copies_limited",
        ),
        pytest.param(
            [("heads_per_gpu = kv // tp if tp <= kv else 1", "heads_per_gpu = -(-kv // tp)")],
            None,
            id="ceil_is_the_same_on_valid_splits",
        ),
    ],
)
def test_edited_solution_message(edits: list[tuple[str, str]], expected: str | None) -> None:
    source = _edited(*edits)
    if expected is None:
        run_exercise(NOTEBOOK, GID, source)
        return
    message = failure_message(NOTEBOOK, GID, source)
    assert expected.lower() in message.lower(), message


def test_a_memo_keyed_by_the_whole_shape_is_correct(capsys) -> None:
    source = "import functools\n\n\n@functools.lru_cache(maxsize=None)\n" + _edited()
    run_exercise(NOTEBOOK, GID, source)
    assert "hidden tests passed" in capsys.readouterr().out


def test_numpy_and_python_ints_pass_floats_fail() -> None:
    message = failure_message(
        NOTEBOOK, GID, _edited(("return kv_cache_bytes(", "return 1.0 * kv_cache_bytes("))
    )
    assert "must be an int" in message and "not /" in message
    run_exercise(
        NOTEBOOK,
        GID,
        "import numpy as np\n"
        + _edited(
            ("return kv_cache_bytes(", "return np.int64(kv_cache_bytes("),
            ("batch, dtype)\n", "batch, dtype))\n"),
        ),
    )


def test_failure_names_the_model_and_its_heads() -> None:
    message = failure_message(
        NOTEBOOK, GID, _edited(("heads_per_gpu = kv // tp if tp <= kv else 1", "heads_per_gpu = 1"))
    )
    assert "Llama-2-7B (32 query heads, 32 KV heads), tp=4" in message, message


@functools.cache
def _solution_seconds() -> float:
    started = time.perf_counter()
    run_exercise(NOTEBOOK, GID)
    return time.perf_counter() - started


def test_solution_grades_in_under_three_seconds() -> None:
    assert _solution_seconds() < 3
