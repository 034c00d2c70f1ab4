"""Chapter 09's graders of quantized_kv_bytes, max_requests_per_gpu and decode_step_costs, beyond what
tests/test_checks.py runs.

The grader's own arithmetic must be kvlib's (every model, many loads); the hidden inputs must reach every
sentence of the docstrings (each ValueError rule, packed codes that need rounding up, every dtype spelling,
a KV head copied, weights that do not fit, defaults and keywords, loads past the visible ones); the visible
checks are quick; the messages for slips no mutant in autograder/mutants/ makes must name them; a correct
answer written in another order is not failed by float rounding at a whole number.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import torch
from exercise_edits import edited_solution, failure_message

from autograder.checks.ch09 import capacity, roofline
from autograder.checks.ch09.shapes import hand_made
from autograder.harness import run_exercise
from kvlib.memory import MODEL_CONFIGS, ModelShape, bytes_per_element, kv_heads_per_gpu
from kvlib.roofline import decode_step_costs
from kvlib.sizing import max_requests_per_gpu, quantized_kv_bytes

pytestmark = [pytest.mark.ch09, pytest.mark.autograder]

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "solutions" / "09_interview.ipynb"
SHAPES = [*MODEL_CONFIGS.values(), hand_made(12, 3, 5), hand_made(30, 5, 96, 5, 9.0)]


# --- the grader's arithmetic is kvlib's ------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.name)
def test_quantized_expected_is_kvlibs(shape: ModelShape) -> None:
    for bits in (2, 4, 8):
        for group in capacity._divisors(shape.head_dim):
            for scale_dtype in capacity.SCALE_DTYPES:
                want = quantized_kv_bytes(shape, 1001, bits, group, 3, scale_dtype)
                assert capacity.quantized_expected(shape, 1001, bits, group, 3, scale_dtype) == want


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.name)
def test_split_rule_and_requests_are_kvlibs(shape: ModelShape) -> None:
    for tp in range(1, 300):
        heads, why = capacity.split(shape, tp)
        if heads is None:
            with pytest.raises(ValueError):
                kv_heads_per_gpu(shape, tp)
            continue
        assert kv_heads_per_gpu(shape, tp) == heads, why
        for gpu_gib, utilization, wd, kd in ((80.0, 0.9, "bf16", "bf16"), (141.0, 0.95, "int4", "fp8")):
            load = capacity.Load(shape, 4097, tp, gpu_gib, utilization, wd, kd)
            assert max_requests_per_gpu(shape, 4097, tp, gpu_gib, utilization, wd, kd) in load.accepted()


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.name)
def test_decode_costs_are_kvlibs(shape: ModelShape) -> None:
    for batch, context_len in ((1, 1), (7, 4097), (1000, 131073)):
        for dtype in roofline.DTYPES:
            want = decode_step_costs(shape, batch, context_len, dtype)
            got = roofline.costs(shape, batch, context_len, dtype)
            assert got.keys() == want.keys()
            for key in roofline.KEYS:
                assert math.isclose(got[key], want[key], rel_tol=1e-12), key


def test_no_slip_equals_the_right_answer() -> None:
    load = capacity.Load(MODEL_CONFIGS["Llama-3-70B"], 8192, 16)
    assert not set(load.variants().values()) & load.accepted()
    args = (MODEL_CONFIGS["Llama-3-8B"], 131072, 4, 32, 1, "fp8")
    assert capacity.quantized_expected(*args) not in capacity.quantized_variants(*args).values()


# --- the hidden inputs reach every sentence ----------------------------------------------------------------


def _quantized_spy() -> tuple[list[dict], object]:
    calls: list[dict] = []

    def quantized_kv_bytes(shape, seq_len, bits, group_size=64, batch=1, scale_dtype="fp16", **kw):
        ok = bits in (2, 4, 8) and group_size >= 1 and shape.head_dim % group_size == 0
        calls.append(
            dict(
                shape=shape, seq_len=seq_len, bits=bits, group=group_size, batch=batch, sd=scale_dtype, ok=ok
            )
        )
        if not ok:
            raise ValueError("bad bits or group")
        codes = -(-shape.head_dim * bits // 8)
        scales = 2 * (shape.head_dim // group_size) * int(bytes_per_element(scale_dtype))
        return 2 * shape.num_layers * shape.num_kv_heads * seq_len * batch * (codes + scales)

    return calls, quantized_kv_bytes


def _requests_spy() -> tuple[list[dict], object]:
    calls: list[dict] = []

    def max_requests_per_gpu(
        shape, seq_len, tp, gpu_gib=80.0, utilization=0.9, weight_dtype="bf16", kv_dtype="bf16"
    ):
        kv = shape.num_kv_heads
        ok = tp >= 1 and shape.num_heads % tp == 0 and (kv % tp == 0 if tp <= kv else tp % kv == 0)
        calls.append(dict(shape=shape, seq_len=seq_len, tp=tp, gpu=gpu_gib, util=utilization, wd=weight_dtype,
                          kd=kv_dtype, ok=ok))  # fmt: skip
        if not ok:
            raise ValueError("uneven split")
        free = utilization * gpu_gib * 2**30 - shape.params_b * 1e9 * bytes_per_element(weight_dtype) / tp
        per_request = (
            2 * shape.num_layers * max(1, kv // tp) * shape.head_dim * seq_len * bytes_per_element(kv_dtype)
        )
        return max(0, math.floor(free / per_request))

    return calls, max_requests_per_gpu


def _decode_spy() -> tuple[list[tuple], object]:
    calls: list[tuple] = []

    def decode_step_costs(shape, batch, context_len, dtype="bf16"):
        calls.append((shape, batch, context_len, dtype))
        b = bytes_per_element(dtype)
        params = shape.params_b * 1e9
        work = shape.num_layers * shape.head_dim * context_len * batch
        return {
            "matmul_flops": 2.0 * params * batch,
            "matmul_bytes": params * b,
            "attention_flops": 4.0 * shape.num_heads * work,
            "attention_bytes": 2.0 * shape.num_kv_heads * work * b,
        }

    return calls, decode_step_costs


def _timed(check, spy, limit: float, capsys, what: str) -> None:
    started = time.perf_counter()
    check(spy)
    assert time.perf_counter() - started < limit
    assert f"{what} tests passed" in capsys.readouterr().out


def test_quantized_hidden_inputs_reach_every_sentence(capsys) -> None:
    calls, spy = _quantized_spy()
    _timed(capacity.quantized_kv_bytes_hidden, spy, 5, capsys, "hidden")
    valid = [c for c in calls if c["ok"]]
    for shape in MODEL_CONFIGS.values():  # every model at every bits, past its context
        assert {c["bits"] for c in valid if c["shape"] is shape} == {2, 4, 8}, shape.name
        assert any(c["seq_len"] > shape.max_seq_len for c in valid if c["shape"] is shape)
    assert any(c["shape"].head_dim * c["bits"] % 8 for c in valid)  # codes that need rounding up
    assert {(c["shape"].head_dim * c["bits"]) % 8 for c in valid} >= {2, 4, 6}
    assert any(c["group"] == c["shape"].head_dim for c in valid) and any(c["group"] == 1 for c in valid)
    for dtype in capacity.SCALE_DTYPES:  # every scale_dtype spelling
        assert any(c["sd"] == dtype and type(c["sd"]) is type(dtype) for c in valid), dtype
    assert any(c["batch"] >= 1000 for c in valid) and any(c["seq_len"] > 131072 for c in valid)
    assert any(c["shape"].num_heads != c["shape"].num_kv_heads for c in valid)
    assert {c["bits"] for c in calls if not c["ok"]} >= {0, 1, 3, 16}  # ValueError: bits
    assert any(c["bits"] in (2, 4, 8) and not c["ok"] for c in calls)  # ValueError: group_size
    assert any(c["bits"] in (2, 4, 8) and c["group"] > c["shape"].head_dim and not c["ok"] for c in calls)
    assert {c["group"] for c in calls if c["bits"] in (2, 4, 8)} >= {0, -1}  # ValueError: not positive


def test_requests_hidden_inputs_reach_every_sentence(capsys) -> None:
    calls, spy = _requests_spy()
    _timed(capacity.max_requests_per_gpu_hidden, spy, 5, capsys, "hidden")
    valid = [c for c in calls if c["ok"]]
    for shape in MODEL_CONFIGS.values():
        tps = {c["tp"] for c in calls if c["shape"] is shape}
        assert set(range(1, 17)) <= tps and max(tps) > 16, shape.name
    assert {c["tp"] for c in calls if not c["ok"]} >= {0, -1}  # ValueError: tp < 1
    splits = [(c["shape"].num_heads, c["shape"].num_kv_heads, c["tp"]) for c in calls if c["tp"] >= 1]
    rules = {
        "query heads": any(h % tp for h, kv, tp in splits),
        "KV heads not divided": any(not h % tp and tp < kv and kv % tp for h, kv, tp in splits),
        "not a multiple": any(not h % tp and tp > kv and tp % kv for h, kv, tp in splits),
        "a multiple of the KV heads, not dividing the query heads": any(
            tp > kv and not tp % kv and h % tp for h, kv, tp in splits
        ),
    }
    assert all(rules.values()), rules
    assert any(c["tp"] > c["shape"].num_kv_heads for c in valid)  # a KV head copied
    assert any(
        c["tp"] > c["shape"].num_kv_heads and c["shape"].num_kv_heads % 2 for c in valid
    )  # 3 or 5 copied
    results = [spy(c["shape"], c["seq_len"], c["tp"], c["gpu"], c["util"], c["wd"], c["kd"]) for c in valid]
    assert 0 in results and max(results) > 1000  # weights that do not fit; big batches
    frees = [
        c["util"] * c["gpu"] * 2**30 - c["shape"].params_b * 1e9 * 2 / c["tp"]
        for c in valid
        if c["wd"] == "bf16"
    ]
    assert min(frees) < -1e11  # far from fitting: a negative count would be far below 0
    for dtype in capacity.WEIGHT_DTYPES:
        assert any(c["wd"] == dtype and type(c["wd"]) is type(dtype) for c in valid), dtype
    for dtype in capacity.KV_DTYPES:
        assert any(c["kd"] == dtype and type(c["kd"]) is type(dtype) for c in valid), dtype
    for name in capacity.MORE_DTYPE_NAMES:
        assert any(c["wd"] == name for c in valid) and any(c["kd"] == name for c in valid), name
    assert len({c["util"] for c in valid}) >= 4 and len({c["gpu"] for c in valid}) >= 4
    assert any(c["seq_len"] > 131072 for c in valid)


def test_decode_hidden_inputs_reach_every_sentence(capsys) -> None:
    calls, spy = _decode_spy()
    _timed(roofline.decode_step_costs_hidden, spy, 5, capsys, "hidden")
    for shape in MODEL_CONFIGS.values():
        assert any(c[0] is shape for c in calls), shape.name
    assert {c[0].num_heads // c[0].num_kv_heads for c in calls} >= {1, 3, 4, 7, 8, 16}
    assert (
        any(c[1] >= 1000 for c in calls)
        and any(c[2] > 131072 for c in calls)
        and any(c[2] == 1 for c in calls)
    )
    for dtype in roofline.DTYPES:
        assert any(c[3] == dtype and type(c[3]) is type(dtype) for c in calls), dtype
    assert any(c[0].hidden_size != c[0].num_heads * c[0].head_dim for c in calls)  # Gemma-7B


@pytest.mark.parametrize(
    ("check", "spy"),
    [
        (capacity.quantized_kv_bytes_visible, _quantized_spy),
        (capacity.max_requests_per_gpu_visible, _requests_spy),
        (roofline.decode_step_costs_visible, _decode_spy),
    ],
    ids=["quantized_kv_bytes", "max_requests_per_gpu", "decode_step_costs"],
)
def test_visible_checks_are_quick(check, spy, capsys) -> None:
    _timed(check, spy()[1], 1, capsys, "visible")


# --- messages for the slips no mutant makes ----------------------------------------------------------------


def _message(grade_id: str, *edits: tuple[str, str]) -> str:
    return failure_message(NOTEBOOK, grade_id, edited_solution(NOTEBOOK, grade_id, *edits))


Q, R, D = "quantized_kv_bytes", "max_requests_per_gpu", "decode_step_costs"


@pytest.mark.parametrize(
    ("grade_id", "edits", "expected"),
    [
        (Q, [("(shape.head_dim // group_size)", "group_size")], "group_size taken as the number of groups"),
        (
            Q,
            [("codes = math.ceil(shape.head_dim * bits / 8)", "codes = shape.head_dim")],
            "codes stored one per byte",
        ),
        (
            Q,
            [("codes = math.ceil(shape.head_dim * bits / 8)", "codes = shape.head_dim * bits / 8")],
            "fraction of a byte",
        ),
        (Q, [("vectors = 2 * shape.num_layers", "vectors = 4 * shape.num_layers")], "counted twice"),
        (Q, [("seq_len * batch", "seq_len")], "the batch is ignored"),
        (Q, [("group_size: int = 64", "group_size: int = 32")], "left to their defaults"),
        (Q, [('scale_dtype="fp16"', 'scale_dtype="fp32"')], "left to their defaults"),
        (Q, [("if bits not in (2, 4, 8):", "if bits not in (4, 8):")], "but the arguments are valid"),
        (
            Q,
            [
                (
                    "return int(vectors * (codes + scales))",
                    "return torch.tensor(int(vectors * (codes + scales)))",
                )
            ],
            "must be a python int",
        ),  # fmt: skip
        (R, [("math.floor(free / per_request)", "round(free / per_request)")], "rounded to the nearest"),
        (
            R,
            [("return max(0, math.floor(free / per_request))", "return int(free / per_request)")],
            "truncated",
        ),
        (
            R,
            [
                (
                    "free = utilization * gpu_gib * 2**30 - shape",
                    "free = utilization * (gpu_gib * 2**30 - shape",
                ),
                ("/ tp\n", "/ tp)\n"),
            ],
            "utilization applied after the weights",
        ),  # fmt: skip
        (R, [("shape.params_b * 1e9", "shape.params_b * 2**30")], "billions of parameters taken as 2**30"),
        (R, [("shape.params_b * 1e9", "shape.params_b")], "params_b not multiplied by 10**9"),
        (R, [("heads = max(1, kv // tp)", "heads = max(1, shape.num_heads // tp)")], "query heads counted"),
        (R, [("heads = max(1, kv // tp)", "heads = kv")], "the kv heads are not split"),
        (R, [("per_request = 2 * shape", "per_request = shape")], "keys only"),
        (R, [("bytes_per_element(kv_dtype)", "2")], "kv_dtype is ignored"),
        (R, [("bytes_per_element(weight_dtype)", "2")], "weight_dtype is ignored"),
        (R, [("utilization: float = 0.9", "utilization: float = 0.95")], "left to their defaults"),
        (
            R,
            [
                ("heads = max(1, kv // tp)", "heads = np.float64(kv) // tp"),
                ("    kv = shape.num_kv_heads\n", "    import numpy as np\n\n    kv = shape.num_kv_heads\n"),
                (
                    "return max(0, math.floor(free / per_request))",
                    "return int(max(0, np.floor(free / per_request)))",
                ),
            ],
            "floors to 0",
        ),  # fmt: skip
        (
            R,
            [("raise ValueError(", "raise RuntimeError(")],
            "must raise valueerror (tp=8 does not divide the 28",
        ),
        (D, [("b = bytes_per_element(dtype)", "b = 1")], "elements, not bytes"),
        (
            D,
            [('"matmul_flops": 2.0 * params * batch', '"matmul_flops": 2.0 * params')],
            "ignored in the matmuls",
        ),
        (
            D,
            [("params = shape.params_b * 1e9", "params = shape.params_b * 2**30")],
            "params_b multiplied by 2**30",
        ),
        (
            D,
            [
                (
                    '"attention_bytes": 2.0 * shape.num_kv_heads * head_work * b',
                    '"attention_bytes": 4.0 * shape.num_kv_heads * head_work * b',
                )
            ],
            "counted twice",
        ),  # fmt: skip
        (D, [('dtype="bf16"', 'dtype="fp32"')], "dtype left to 'bf16'"),
        (
            D,
            [('"matmul_flops": 2.0 * params * batch', '"matmul_flops": torch.tensor(2.0 * params * batch)')],
            "must be a float, got a tensor",
        ),  # fmt: skip
        (
            D,
            [("    return {\n", "    return dict(extra=0.0, **{\n"), ("b,\n    }\n", "b,\n    })\n")],
            "unexpected",
        ),
        (D, [('        "matmul_bytes": float(params * b),\n', "")], "missing ['matmul_bytes']"),
    ],
)
@pytest.mark.filterwarnings("ignore:divide by zero encountered:RuntimeWarning")  # NumPy's x / 0.0 -> inf
def test_edited_solution_message(grade_id: str, edits: list[tuple[str, str]], expected: str) -> None:
    message = _message(grade_id, *edits)
    assert expected.lower() in message.lower(), message


def test_hidden_size_for_the_query_width_is_named_on_gemma() -> None:
    # Gemma-7B: 16 heads of 256 = 4096 > hidden_size 3072, the only model of the table that tells them apart
    edit = ("4.0 * shape.num_heads * head_work", "4.0 * shape.hidden_size / shape.head_dim * head_work")
    message = _message(D, edit)
    assert "Gemma-7B" in message and "hidden_size (3072) for num_heads * head_dim (4096)" in message, message


# --- correct answers the grader must not fail --------------------------------------------------------------


def test_either_neighbour_of_a_whole_quotient_passes() -> None:
    # 1 GiB fully usable, weights of 2**29 bytes, requests of 2**20 bytes: exactly 512 fit, and a float
    # formula written in another order may compute 511.999... or 512.000...1.
    shape = ModelShape("tie", 2, 8, 8, 64, 512, 4096, 2**28 / 1e9, "test")
    load = capacity.Load(shape, 256, 1, 1.0, 1.0)
    assert 2 * 2 * 8 * 64 * 256 * 2 == 2**20
    assert {511, 512} <= load.accepted()
    for answer in (511, 512):
        capacity._r_value(lambda *a, answer=answer, **k: answer, load)
    assert load.want() == 512
    with pytest.raises(AssertionError, match="returned 513, expected 512"):
        capacity._r_value(lambda *a, **k: 513, load)


def test_a_check_for_tp_below_one_or_group_size_zero_is_fine() -> None:
    run_exercise(NOTEBOOK, R, edited_solution(NOTEBOOK, R, ("if tp < 1 or", "if tp < 1 or tp > 4096 or")))
    run_exercise(NOTEBOOK, Q, edited_solution(NOTEBOOK, Q, ("if group_size < 1 or", "if group_size <= 0 or")))


def test_kvlibs_split_rule_scores_zero() -> None:
    source = "from kvlib.memory import kv_heads_per_gpu\n\n" + edited_solution(
        NOTEBOOK,
        R,
        ("heads = max(1, kv // tp)", "heads = kv_heads_per_gpu(shape, tp)"),
    )
    assert "delegates to kvlib" in failure_message(NOTEBOOK, R, source)


def test_kv_cache_bytes_from_the_setup_cell_is_fine_for_the_cache_bytes() -> None:
    source = edited_solution(
        NOTEBOOK,
        D,
        (
            '"attention_bytes": 2.0 * shape.num_kv_heads * head_work * b,',
            '"attention_bytes": float(kv_cache_bytes(shape.num_layers, shape.num_kv_heads, shape.head_dim, '
            "context_len, batch, dtype)),",
        ),
    )
    run_exercise(NOTEBOOK, D, source)


def test_torch_float_dtypes_are_accepted_for_every_dtype_argument() -> None:
    assert torch.bfloat16 in capacity.WEIGHT_DTYPES and torch.float32 in capacity.KV_DTYPES
    assert torch.float32 in capacity.SCALE_DTYPES and torch.bfloat16 in roofline.DTYPES
