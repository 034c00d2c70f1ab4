"""Chapter 09's graders of kv_gib, gpus_needed and prefix_cached_bytes, beyond what tests/test_checks.py runs.

The grader's own arithmetic must be kvlib's (every model, many loads, with no slack hidden where none is
needed); the hidden inputs must reach every sentence of the docstrings (every dtype spelling, an empty
load, a load that fills GPUs exactly, no users and one, blocks of 1 and 256, a prompt shorter than a block
or of whole blocks, loads past the visible ones, defaults and keywords); every check is quick; each slip
listed in the chapter is named when a learner makes it, including the slips no mutant in
autograder/mutants/ makes; answers of the right value in another spelling (NumPy numbers, kv_cache_bytes
for the KV part) pass, and kvlib's own sizing functions score 0.
"""

from __future__ import annotations

import functools
import inspect
import math
import time
from pathlib import Path

import pytest
from exercise_edits import edited_solution, failure_message

from autograder.checks.ch09 import sizing
from autograder.harness import run_exercise
from kvlib.memory import MODEL_CONFIGS, GiB, ModelShape, kv_cache_bytes
from kvlib.sizing import gpus_needed, kv_gib, prefix_cached_bytes

pytestmark = [pytest.mark.ch09, pytest.mark.autograder]

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "solutions" / "09_interview.ipynb"
SHAPES = [*MODEL_CONFIGS.values(), sizing.ODD, sizing.NO_WEIGHTS, sizing.hand_made(5, 30, 5, 96, 2000, 9.5)]


# --- the grader's arithmetic is kvlib's --------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.name[:40])
def test_grader_arithmetic_is_kvlibs(shape: ModelShape) -> None:
    for dtype in sizing.DTYPES:
        for seq_len, batch in ((0, 3), (1, 1), (1001, 7), (131072, 1000)):
            want = kv_cache_bytes(shape.num_layers, shape.num_kv_heads, shape.head_dim, seq_len, batch, dtype)
            assert sizing._kv(shape, seq_len, batch, dtype) == want
            assert math.isclose(kv_gib(shape, seq_len, batch, dtype), want / GiB, rel_tol=1e-15)
        for n, seq_len, gpu_gib, utilization in (
            (0, 2048, 80.0, 0.9),
            (37, 4097, 24, 0.95),
            (1000, 131072, 1.5, 1),
        ):
            case = sizing._gpus_case(shape, n, seq_len, gpu_gib, utilization, "bf16", dtype)
            assert gpus_needed(shape, *case.args.values()) in sizing._gpus_expected(case)
        for p, s, n, bs in (
            (0, 0, 0, 16),
            (5, 3, 1, 16),
            (1000, 200, 1000, 16),
            (131071, 4097, 99, 256),
            (77, 9, 3, 1),
        ):
            blocks = sizing._prefix_blocks(p, s, n, bs)
            assert blocks * bs * sizing._kv(shape, 1, 1, dtype) == prefix_cached_bytes(
                shape, p, s, n, bs, dtype
            )


def test_no_slip_equals_the_right_answer() -> None:
    cases = [
        sizing._kv_gib_case(sizing.ODD, 1001, 7, "int4"),
        sizing._gpus_case(sizing.ODD, 1000, 4096, 0.25, 0.9, "int8", "fp16"),
        sizing._prefix_case(sizing.ODD, 50, 37, 4, 32, "fp32"),
    ]
    for ex, case in zip((sizing.KV_GIB, sizing.GPUS, sizing.PREFIX), cases, strict=True):
        for message, value in ex.slips(case).values():
            assert not ex.accepts(case, float(value)), message


# --- the hidden inputs reach every sentence ----------------------------------------------------------------


def _spy(name: str) -> tuple[list[tuple], object]:
    """kvlib's answer (as a learner's function, so it runs under the same checks) that records each call."""
    reference = {"kv_gib": kv_gib, "gpus_needed": gpus_needed, "prefix_cached_bytes": prefix_cached_bytes}[
        name
    ]
    calls: list[tuple] = []

    def spy(shape, *args, **kwargs):
        calls.append((shape, args, kwargs))
        return reference(shape, *args, **kwargs)

    return calls, spy


def _bound(name: str, call: tuple) -> dict:
    reference = {"kv_gib": kv_gib, "gpus_needed": gpus_needed, "prefix_cached_bytes": prefix_cached_bytes}[
        name
    ]
    bound = inspect.signature(reference).bind(call[0], *call[1], **call[2])
    bound.apply_defaults()
    return dict(bound.arguments)


@pytest.fixture
def unguarded():
    """A check without its delegation guard (the spy calls kvlib's answer on purpose)."""
    return lambda check, fn: check.__wrapped__(fn)


def test_kv_gib_hidden_inputs(unguarded, capsys) -> None:
    calls, spy = _spy("kv_gib")
    started = time.perf_counter()
    unguarded(sizing.kv_gib_hidden, spy)
    assert time.perf_counter() - started < 3
    assert "hidden tests passed" in capsys.readouterr().out
    args = [_bound("kv_gib", c) for c in calls]
    assert {id(a["shape"]) for a in args} >= {id(s) for s in MODEL_CONFIGS.values()}
    assert all(any(a["dtype"] is d or a["dtype"] == d for a in args) for d in sizing.DTYPES)
    assert any(a["batch"] >= 1000 and a["seq_len"] >= 131072 for a in args)
    assert any(a["seq_len"] == 0 for a in args) and any(a["seq_len"] == 1 for a in args)
    assert any(a["shape"].hidden_size not in (a["shape"].num_heads * a["shape"].head_dim,) for a in args)
    assert any(a["shape"].num_kv_heads < a["shape"].num_heads for a in args)
    assert any(len(c[1]) == 1 and not c[2] for c in calls)  # the defaults
    assert any(c[2] for c in calls)  # keywords
    assert any(
        kv_gib(a["shape"], a["seq_len"], a["batch"], a["dtype"]).is_integer() and a["seq_len"] for a in args
    )


def test_gpus_needed_hidden_inputs(unguarded, capsys) -> None:
    calls, spy = _spy("gpus_needed")
    started = time.perf_counter()
    unguarded(sizing.gpus_needed_hidden, spy)
    assert time.perf_counter() - started < 3
    assert "hidden tests passed" in capsys.readouterr().out
    args = [_bound("gpus_needed", c) for c in calls]
    for key in ("weight_dtype", "kv_dtype"):  # each spelling for the weights and for the cache
        assert all(any(a[key] is d or a[key] == d for a in args) for d in sizing.DTYPES), key
    assert any(a["n_requests"] == 0 and a["shape"].params_b == 0 for a in args)  # nothing at all: 1 GPU
    assert any(a["n_requests"] == 0 and a["shape"].params_b > 0 for a in args)  # the weights alone
    assert any(a["n_requests"] >= 1000 and a["seq_len"] >= 131072 for a in args)
    assert {a["utilization"] for a in args} >= {0.5, 0.9, 1}
    assert any(gpus_needed(**a) >= 100 for a in args)  # counts large enough to tell slips of a few % apart
    assert any(len(c[1]) == 2 and not c[2] for c in calls) and any(c[2] for c in calls)
    # a load that fills GPUs exactly, where int(x) + 1 is one too many
    exact = [a for a in args if a["shape"].params_b == 0 and a["n_requests"] and a["seq_len"]]
    assert any(
        (
            sizing._kv(a["shape"], a["seq_len"], a["n_requests"], a["kv_dtype"])
            / (a["gpu_gib"] * a["utilization"] * GiB)
        ).is_integer()
        for a in exact
    )


def test_gpus_needed_hidden_answers_have_no_slack_except_at_whole_numbers() -> None:
    calls, spy = _spy("gpus_needed")
    sizing.gpus_needed_hidden.__wrapped__(spy)
    for c in calls:
        a = _bound("gpus_needed", c)
        if a["shape"] is sizing.NO_WEIGHTS:
            continue  # exact in floating point, whole numbers by design: graded strictly
        case = sizing._gpus_case(**a)
        assert len(sizing._gpus_expected(case)) == 1, a  # no other load sits within 1e-9 of a whole GPU


def test_prefix_hidden_inputs(unguarded, capsys) -> None:
    calls, spy = _spy("prefix_cached_bytes")
    started = time.perf_counter()
    unguarded(sizing.prefix_cached_bytes_hidden, spy)
    assert time.perf_counter() - started < 3
    assert "hidden tests passed" in capsys.readouterr().out
    args = [_bound("prefix_cached_bytes", c) for c in calls]
    assert all(any(a["dtype"] is d or a["dtype"] == d for a in args) for d in sizing.DTYPES)
    assert {a["n_users"] for a in args} >= {0, 1} and max(a["n_users"] for a in args) >= 100_000
    assert {a["block_size"] for a in args} >= {1, 16, 256}
    assert max(a["prefix_len"] for a in args) >= 131072
    pb = [(a["prefix_len"], a["suffix_len"], a["block_size"], a["n_users"]) for a in args]
    assert any(0 < p < bs and n > 1 for p, s, bs, n in pb)  # a prompt shorter than a block
    assert any(p and p % bs == 0 and s == 0 and n > 1 for p, s, bs, n in pb)  # whole blocks, no suffix
    assert any(p % bs and (p % bs + s) % bs == 0 and n > 1 for p, s, bs, n in pb)  # fill a block exactly
    assert any(p % bs and s % bs == 0 and s and n > 1 for p, s, bs, n in pb)  # apart != packed
    assert any(p == 0 for p, s, bs, n in pb) and any(s == 0 and p == 0 for p, s, bs, n in pb)
    assert any(len(c[1]) == 3 and not c[2] for c in calls) and any(c[2] for c in calls)
    for a in args:  # every answer is exact in a float, so a learner's float arithmetic is never blamed
        assert prefix_cached_bytes(**a) < 2**53


@pytest.mark.parametrize(
    ("check", "name"),
    [
        (sizing.kv_gib_visible, "kv_gib"),
        (sizing.gpus_needed_visible, "gpus_needed"),
        (sizing.prefix_cached_bytes_visible, "prefix_cached_bytes"),
    ],
)
def test_visible_checks_are_quick_with_batch_and_gqa(unguarded, check, name: str, capsys) -> None:
    calls, spy = _spy(name)
    started = time.perf_counter()
    unguarded(check, spy)
    assert time.perf_counter() - started < 1
    assert "visible tests passed" in capsys.readouterr().out
    args = [_bound(name, c) for c in calls]
    assert any(a["shape"].num_kv_heads < a["shape"].num_heads for a in args)
    many = {"kv_gib": "batch", "gpus_needed": "n_requests", "prefix_cached_bytes": "n_users"}[name]
    assert any(a[many] > 1 for a in args)


# --- each slip is named ------------------------------------------------------------------------------------


def _edited(grade_id: str, *edits: tuple[str, str]) -> str:
    return edited_solution(NOTEBOOK, grade_id, *edits)


KV = "per_token = 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim * bytes_per_element(dtype)"
KV_RETURN = "return per_token * seq_len * batch / 2**30"
GPU_RETURN = "return max(1, math.ceil((weights + kv) / usable))"
PREFIX_OWN = "own = math.ceil((prefix_len - shared * block_size + suffix_len) / block_size)"
PREFIX_RETURN = "return int((shared + n_users * own) * block_size * per_token)"


@pytest.mark.parametrize(
    ("grade_id", "edits", "expected"),
    [
        # kv_gib
        (
            "kv_gib",
            [("2 * shape.num_layers * shape.num_kv_heads", "2 * shape.num_kv_heads")],
            "num_layers is ignored",
        ),
        ("kv_gib", [("per_token * seq_len * batch", "per_token * batch")], "seq_len is ignored"),
        ("kv_gib", [("/ 2**30", "/ 2**20")], "MiB, not GiB"),
        ("kv_gib", [(" / 2**30", "")], "bytes, not GiB"),
        (
            "kv_gib",
            [("* bytes_per_element(dtype)", "* 8 * bytes_per_element(dtype)")],
            "bits instead of bytes",
        ),
        (
            "kv_gib",
            [("* bytes_per_element(dtype)", "* max(1, bytes_per_element(dtype))")],
            "a packed dtype='int4'",
        ),
        ("kv_gib", [("* bytes_per_element(dtype)", "* 2")], "is ignored (2 bytes per element used)"),
        ("kv_gib", [("2 * shape.num_layers", "4 * shape.num_layers")], "the factor 2 is counted twice"),
        ("kv_gib", [("batch: int = 1", "batch: int = 2")], "left to their defaults"),
        ("kv_gib", [('dtype="fp16"', 'dtype="fp32"')], "left to their defaults"),
        (
            "kv_gib",
            [(KV_RETURN, "return round(per_token * seq_len * batch / 2**30)")],
            "rounded to 0 decimals",
        ),
        (
            "kv_gib",
            [(KV_RETURN, "return 1.5 * per_token * seq_len * batch / 2**30")],
            "GiB = 2 (keys and values)",
        ),
        (
            "kv_gib",
            [(KV_RETURN, 'return f"{per_token * seq_len * batch / 2**30:.3f} GiB"')],
            "must be a number",
        ),
        # gpus_needed
        (
            "gpus_needed",
            [
                ("* bytes_per_element(weight_dtype)", "* bytes_per_element(kv_dtype)"),
                ("kv *= bytes_per_element(kv_dtype)", "kv *= bytes_per_element(weight_dtype)"),
            ],
            "swapped",
        ),
        ("gpus_needed", [("* bytes_per_element(weight_dtype)", "* 2")], "weight_dtype is ignored"),
        ("gpus_needed", [("shape.params_b * 1e9", "shape.params_b * 2**30")], "params_b multiplied by 2**30"),
        ("gpus_needed", [("* seq_len * n_requests", "* seq_len")], "n_requests is ignored"),
        ("gpus_needed", [("(weights + kv) / usable", "kv / usable")], "the weights are left out"),
        ("gpus_needed", [("(weights + kv) / usable", "weights / usable")], "the KV cache is left out"),
        (
            "gpus_needed",
            [("math.ceil((weights + kv) / usable)", "round((weights + kv) / usable)")],
            "round()",
        ),
        (
            "gpus_needed",
            [("shape.num_kv_heads", "shape.num_heads")],
            "num_heads (64) instead of num_kv_heads (8)",
        ),
        (
            "gpus_needed",
            [("utilization: float = 0.9", "utilization: float = 0.95")],
            "left to their defaults",
        ),
        ("gpus_needed", [("gpu_gib: float = 80.0", "gpu_gib: float = 81.5")], "defaults of the signature"),
        # prefix_cached_bytes
        (
            "prefix_cached_bytes",
            [
                (PREFIX_OWN, "own = math.ceil(prefix_len / block_size) + math.ceil(suffix_len / block_size)"),
                ("(shared + n_users * own)", "n_users * own"),
            ],
            "stored per user (and rounded up apart",
        ),
        (
            "prefix_cached_bytes",
            [(PREFIX_RETURN, "return int((prefix_len + n_users * suffix_len) * per_token)")],
            "tokens counted, not blocks",
        ),
        (
            "prefix_cached_bytes",
            [(PREFIX_OWN, PREFIX_OWN.replace("math.ceil", "round"))],
            "rounded with round()",
        ),
        (
            "prefix_cached_bytes",
            [(PREFIX_OWN, "own = math.ceil(suffix_len / block_size)")],
            "the prefix's partial block is forgotten",
        ),
        (
            "prefix_cached_bytes",
            [(PREFIX_RETURN, "return shared + n_users * own")],
            "a number of blocks, not bytes",
        ),
        (
            "prefix_cached_bytes",
            [(PREFIX_RETURN, "return (shared + n_users * own) * block_size * per_token / 2**30")],
            "GiB, not bytes",
        ),
        ("prefix_cached_bytes", [(KV, KV.replace("bytes_per_element(dtype)", "2"))], "dtype is ignored"),
        (
            "prefix_cached_bytes",
            [(KV, KV.replace("bytes_per_element(dtype)", "max(1, bytes_per_element(dtype))"))],
            "counted as a whole byte",
        ),
        ("prefix_cached_bytes", [("shape.num_kv_heads", "shape.num_heads")], "instead of num_kv_heads"),
        ("prefix_cached_bytes", [("block_size: int = 16", "block_size: int = 32")], "left to their defaults"),
    ],
)
def test_each_slip_is_named(grade_id: str, edits: list[tuple[str, str]], expected: str) -> None:
    message = failure_message(NOTEBOOK, grade_id, _edited(grade_id, *edits))
    assert expected.lower() in message.lower(), message


def test_the_question_is_in_the_message() -> None:
    message = failure_message(NOTEBOOK, "kv_gib", _edited("kv_gib", ("* batch", "")))
    assert (
        "kv_gib(Llama-2-70B, seq_len=2048, batch=100, dtype='fp16') returned 0.625, expected 62.5 GiB"
        in message
    )
    message = failure_message(NOTEBOOK, "gpus_needed", _edited("gpus_needed", ("math.ceil", "math.floor")))
    assert (
        "gpus_needed(Llama-2-70B, n_requests=100, seq_len=2048, gpu_gib=80.0, utilization=0.9, "
        "weight_dtype='bf16', kv_dtype='bf16') returned 2, expected 3 GPUs" in message
    ), message


def test_a_slip_the_probes_contradict_is_not_named() -> None:
    # ceil + 1 GPUs lands on some slip's count for some load by chance; the probes show it is none of them
    source = _edited("gpus_needed", (GPU_RETURN, "return max(1, math.ceil((weights + kv) / usable)) + 1"))
    message = failure_message(NOTEBOOK, "gpus_needed", source)
    assert message.endswith("(utilization * gpu_gib * 2**30)))"), message


def test_an_error_on_a_dtype_spelling_says_what_dtype_may_be() -> None:
    source = _edited(
        "kv_gib",
        (
            "* bytes_per_element(dtype)",
            '* torch.empty((), dtype=getattr(torch, {"fp16": "float16"}.get(dtype, dtype))).element_size()',
        ),
    )
    message = failure_message(NOTEBOOK, "kv_gib", source)
    assert "bytes_per_element(dtype), imported in the setup cell, accepts them all" in message, message


# --- the right value in another spelling passes; kvlib's sizing scores 0 ------------------------------------


@pytest.mark.parametrize(
    ("grade_id", "prelude", "edits"),
    [
        (
            "kv_gib",
            "import numpy as np\n",
            [(KV_RETURN, "return np.float32(per_token * seq_len * batch / 2**30)")],
        ),
        ("kv_gib", "", [(KV_RETURN, "return float(per_token * seq_len * batch) / 1024 / 1024 / 1024")]),
        (
            "gpus_needed",
            "import numpy as np\n",
            [(GPU_RETURN, "return np.int32(max(1, np.ceil((weights + kv) / usable)))")],
        ),
        (
            "gpus_needed",
            "",
            [
                (
                    "kv = 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim * seq_len * n_requests\n"
                    "    kv *= bytes_per_element(kv_dtype)",
                    "kv = kv_cache_bytes(shape.num_layers, shape.num_kv_heads, shape.head_dim, seq_len, "
                    "n_requests, kv_dtype)",
                )
            ],
        ),
        (
            "gpus_needed",
            "",
            [
                ("usable = utilization * gpu_gib * 2**30", "usable = gpu_gib * 2**30"),
                ("(weights + kv) / usable", "(weights + kv) / utilization / usable"),
            ],
        ),
        (
            "prefix_cached_bytes",
            "import numpy as np\n",
            [(PREFIX_RETURN, "return np.int64(int((shared + n_users * own) * block_size * per_token))")],
        ),
        (
            "prefix_cached_bytes",
            "",
            [
                (
                    PREFIX_RETURN,
                    "return (shared + n_users * own) * kv_cache_bytes(shape.num_layers, shape.num_kv_heads, "
                    "shape.head_dim, block_size, 1, dtype)",
                )
            ],
        ),
    ],
)
def test_right_values_in_other_spellings_pass(
    grade_id: str, prelude: str, edits: list[tuple[str, str]], capsys
) -> None:
    run_exercise(NOTEBOOK, grade_id, prelude + _edited(grade_id, *edits))
    assert "hidden tests passed" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("grade_id", "edits"),
    [
        (
            "kv_gib",
            [
                (
                    KV_RETURN,
                    "return kv_cache_bytes(shape.num_layers, shape.num_kv_heads, shape.head_dim, seq_len, "
                    "batch, dtype) / 2**30",
                )
            ],
        ),
        ("kv_gib", [(KV_RETURN, "return shape.kv_bytes(seq_len, batch, dtype) / 2**30")]),
        ("kv_gib", [(KV_RETURN, "return shape.kv_bytes_per_token(dtype) * seq_len * batch / 2**30")]),
        (
            "gpus_needed",
            [
                (
                    "kv *= bytes_per_element(kv_dtype)",
                    "kv = _sizing.kv_gib(shape, seq_len, n_requests, kv_dtype) * 2**30",
                )
            ],
        ),
        (
            "prefix_cached_bytes",
            [
                (
                    PREFIX_RETURN,
                    "return _sizing.prefix_cached_bytes(shape, prefix_len, suffix_len, n_users, block_size, "
                    "dtype)",
                )
            ],
        ),
    ],
)
def test_kvlibs_sizing_scores_zero(grade_id: str, edits: list[tuple[str, str]]) -> None:
    source = "import kvlib.sizing as _sizing\n" + _edited(grade_id, *edits)
    message = failure_message(NOTEBOOK, grade_id, source)
    assert "delegates to kvlib" in message, message


# --- quick --------------------------------------------------------------------------------------------------


@functools.cache
def _solution_seconds(grade_id: str) -> float:
    run_exercise(NOTEBOOK, grade_id)  # imports and first calls
    started = time.perf_counter()
    run_exercise(NOTEBOOK, grade_id)
    return time.perf_counter() - started


@pytest.mark.parametrize("grade_id", ["kv_gib", "gpus_needed", "prefix_cached_bytes"])
def test_solution_grades_in_under_a_second(grade_id: str) -> None:
    assert _solution_seconds(grade_id) < 1
