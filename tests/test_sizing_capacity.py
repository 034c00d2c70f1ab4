"""kvlib.sizing's quantized KV bytes and requests per GPU under tensor parallelism (chapter 09).

Each value is checked against a computation done by hand in the test (or in its comment), so a change
of formula shows up as a wrong number, not as two implementations agreeing with each other. Bad input
ends in one line that names the argument.
"""

from __future__ import annotations

import math

import pytest
import torch
from bad_input import Case, assert_clear_error, params

from kvlib.memory import MODEL_CONFIGS, GiB, ModelShape, kv_cache_bytes
from kvlib.sizing import max_requests_per_gpu, quantized_kv_bytes

pytestmark = pytest.mark.ch09

LLAMA3_8B = MODEL_CONFIGS["Llama-3-8B"]  # 32 layers, 32 query heads, 8 KV heads of 128, 8.0B
LLAMA3_70B = MODEL_CONFIGS["Llama-3-70B"]  # 80 layers, 64 query heads, 8 KV heads of 128, 70.6B
LLAMA31_405B = MODEL_CONFIGS["Llama-3.1-405B"]  # 126 layers, 128 query heads, 8 KV heads of 128, 405B


def _shape(num_heads: int, num_kv_heads: int, head_dim: int, num_layers: int = 2, params_b: float = 1.0):
    return ModelShape(
        "test", num_layers, num_heads, num_kv_heads, head_dim, num_heads * head_dim, 4096, params_b, "t"
    )


# --- quantized_kv_bytes --------------------------------------------------------------------------------


def test_int4_groups_of_32_on_llama3_8b_at_128k_tokens_is_5_gib() -> None:
    # per vector: 128 codes of 4 bits = 64 bytes, + 4 groups * (scale + zero-point) * 2 bytes = 16 bytes;
    # vectors: 2 (K, V) * 32 layers * 8 KV heads * 131072 tokens = 2**26; 80 * 2**26 = 5 * 2**30.
    assert quantized_kv_bytes(LLAMA3_8B, 131072, 4, 32) == 5 * GiB


@pytest.mark.parametrize(
    ("bits", "group", "per_vector"),
    [
        (8, 64, 128 + 2 * 2 * 2),  # 128 code bytes, 2 groups
        (8, 128, 128 + 1 * 2 * 2),
        (4, 64, 64 + 2 * 2 * 2),
        (4, 1, 64 + 128 * 2 * 2),  # a scale and a zero-point per channel: more than the codes
        (2, 128, 32 + 1 * 2 * 2),
        (2, 32, 32 + 4 * 2 * 2),
    ],
)
def test_bytes_per_vector_by_hand(bits: int, group: int, per_vector: int) -> None:
    vectors = 2 * 32 * 8 * 1000 * 3
    got = quantized_kv_bytes(LLAMA3_8B, 1000, bits, group, batch=3)
    assert got == vectors * per_vector
    assert type(got) is int


def test_int4_saves_less_than_4x_against_fp16_because_of_the_scales() -> None:
    fp16 = kv_cache_bytes(32, 8, 128, 131072, 1, "fp16")
    int8 = quantized_kv_bytes(LLAMA3_8B, 131072, 8, 64)
    int4 = quantized_kv_bytes(LLAMA3_8B, 131072, 4, 64)
    assert fp16 / int8 == pytest.approx(256 / 136)
    assert fp16 / int4 == pytest.approx(256 / 72)  # 3.56x, not 4x
    assert int8 / int4 == pytest.approx(136 / 72)  # int4 does not quite halve int8


@pytest.mark.parametrize(
    ("head_dim", "bits", "code_bytes"),
    [(6, 2, 2), (5, 4, 3), (5, 2, 2), (7, 2, 2), (10, 2, 3), (3, 4, 2), (6, 4, 3), (4, 2, 1)],
)
def test_packed_codes_are_rounded_up_to_whole_bytes(head_dim: int, bits: int, code_bytes: int) -> None:
    shape = _shape(4, 2, head_dim, num_layers=3)
    vectors = 2 * 3 * 2 * 7  # K and V, 3 layers, 2 KV heads, 7 tokens
    got = quantized_kv_bytes(shape, 7, bits, group_size=head_dim)  # one group per vector
    assert got == vectors * (code_bytes + 2 * 2)


@pytest.mark.parametrize(
    ("scale_dtype", "scale_bytes"),
    [
        ("fp16", 2),
        (torch.float16, 2),
        ("bf16", 2),
        (torch.bfloat16, 2),
        ("fp32", 4),
        (torch.float32, 4),
        ("fp8", 1),
    ],
)
def test_scale_dtype_sets_the_bytes_of_scales_and_zero_points(scale_dtype, scale_bytes: int) -> None:
    vectors = 2 * 32 * 8 * 100
    assert quantized_kv_bytes(LLAMA3_8B, 100, 4, 32, 1, scale_dtype) == vectors * (64 + 4 * 2 * scale_bytes)


def test_quantized_bytes_count_kv_heads_batch_and_zero_tokens() -> None:
    mha = _shape(8, 8, 64)
    gqa = _shape(8, 2, 64)
    assert quantized_kv_bytes(mha, 10, 4) == 4 * quantized_kv_bytes(gqa, 10, 4)
    assert quantized_kv_bytes(gqa, 10, 4, batch=5) == 5 * quantized_kv_bytes(gqa, 10, 4)
    assert quantized_kv_bytes(gqa, 0, 4) == 0


# --- max_requests_per_gpu ------------------------------------------------------------------------------


def test_llama3_70b_at_tp8_holds_177_requests_of_8192_tokens() -> None:
    # usable 0.9 * 80 GiB = 77,309,411,328 bytes; weights 70.6e9 * 2 / 8 = 17,650,000,000 per GPU;
    # a request: 2 * 80 layers * 1 KV head * 128 * 8192 tokens * 2 bytes = 335,544,320 bytes;
    # (77,309,411,328 - 17,650,000,000) / 335,544,320 = 177.8 -> 177.
    got = max_requests_per_gpu(LLAMA3_70B, 8192, 8)
    assert got == 177
    assert type(got) is int


def test_past_tp_equal_kv_heads_the_cache_per_request_stops_shrinking() -> None:
    # tp=16 > 8 KV heads: each GPU still keeps one (copied) KV head per request, the weights halve again.
    per_request = 2 * 80 * 1 * 128 * 8192 * 2
    free = 0.9 * 80 * GiB - 70.6e9 * 2 / 16
    assert max_requests_per_gpu(LLAMA3_70B, 8192, 16) == math.floor(free / per_request) == 204
    # at tp=4 each GPU holds 2 KV heads: twice the bytes per request
    free4 = 0.9 * 80 * GiB - 70.6e9 * 2 / 4
    assert max_requests_per_gpu(LLAMA3_70B, 8192, 4) == math.floor(free4 / (2 * per_request))


def test_weights_that_do_not_fit_give_zero_never_negative() -> None:
    # 405e9 * 2 / 8 = 101.25e9 bytes per GPU > 77.3e9 usable
    for tp in (1, 2, 4, 8):
        assert max_requests_per_gpu(LLAMA31_405B, 8192, tp) == 0
    assert max_requests_per_gpu(LLAMA31_405B, 8192, 16) > 0


def test_gib_utilization_and_dtypes_by_hand() -> None:
    shape = _shape(8, 8, 64, num_layers=2, params_b=10.0)  # 20e9 bytes of bf16 weights
    per_request = 2 * 2 * 8 * 64 * 1000 * 2  # 4,096,000 bytes at tp=1
    assert max_requests_per_gpu(shape, 1000, 1) == math.floor((0.9 * 80 * GiB - 20e9) / per_request)
    assert max_requests_per_gpu(shape, 1000, 1, 40.0, 0.5) == math.floor(
        (0.5 * 40 * GiB - 20e9) / per_request
    )
    # int8 weights, fp8 cache: 10e9 bytes of weights, half the bytes per request
    assert max_requests_per_gpu(shape, 1000, 1, weight_dtype="int8", kv_dtype="fp8") == math.floor(
        (0.9 * 80 * GiB - 10e9) / (per_request / 2)
    )
    assert max_requests_per_gpu(
        shape, 1000, 2, weight_dtype=torch.float32, kv_dtype=torch.bfloat16
    ) == math.floor((0.9 * 80 * GiB - 40e9 / 2) / (per_request / 2))


@pytest.mark.parametrize(
    ("heads", "kv", "tp", "kv_per_gpu"),
    [(12, 3, 3, 1), (12, 3, 6, 1), (12, 3, 12, 1), (12, 6, 2, 3), (16, 1, 8, 1), (8, 8, 8, 1), (8, 8, 4, 2)],
)
def test_kv_heads_per_gpu_split_or_copied(heads: int, kv: int, tp: int, kv_per_gpu: int) -> None:
    shape = _shape(heads, kv, 64, num_layers=4, params_b=2.0)
    per_request = 2 * 4 * kv_per_gpu * 64 * 512 * 2
    want = math.floor((0.9 * 80 * GiB - 2e9 * 2 / tp) / per_request)
    assert max_requests_per_gpu(shape, 512, tp) == want


# --- bad input -------------------------------------------------------------------------------------------

BAD = [
    Case(
        "shape as a name", lambda: quantized_kv_bytes("Llama-3-8B", 10, 4), TypeError, ("shape", "ModelShape")
    ),
    Case("bits 3", lambda: quantized_kv_bytes(LLAMA3_8B, 10, 3), ValueError, ("bits", "3")),
    Case("bits 16", lambda: quantized_kv_bytes(LLAMA3_8B, 10, 16), ValueError, ("bits", "16")),
    Case("bits as a float", lambda: quantized_kv_bytes(LLAMA3_8B, 10, 4.0), TypeError, ("bits", "float")),
    Case(
        "group not dividing",
        lambda: quantized_kv_bytes(LLAMA3_8B, 10, 4, 48),
        ValueError,
        ("group_size", "48", "128"),
    ),
    Case(
        "group larger",
        lambda: quantized_kv_bytes(LLAMA3_8B, 10, 4, 256),
        ValueError,
        ("group_size", "head_dim"),
    ),
    Case("group 0", lambda: quantized_kv_bytes(LLAMA3_8B, 10, 4, 0), ValueError, ("group_size", ">= 1")),
    Case("negative seq_len", lambda: quantized_kv_bytes(LLAMA3_8B, -1, 4), ValueError, ("seq_len", "-1")),
    Case(
        "negative batch", lambda: quantized_kv_bytes(LLAMA3_8B, 10, 4, batch=-2), ValueError, ("batch", "-2")
    ),
    Case(
        "packed scale",
        lambda: quantized_kv_bytes(LLAMA3_8B, 10, 4, scale_dtype="int4"),
        ValueError,
        ("scale_dtype",),
    ),
    Case(
        "unknown scale",
        lambda: quantized_kv_bytes(LLAMA3_8B, 10, 4, scale_dtype="fp17"),
        ValueError,
        ("fp17",),
    ),
    Case(
        "tp not dividing heads",
        lambda: max_requests_per_gpu(LLAMA3_8B, 10, 3),
        ValueError,
        ("tp=3", "query heads"),
    ),
    Case(
        "tp neither divides nor multiplies KV heads",
        lambda: max_requests_per_gpu(MODEL_CONFIGS["Qwen2-7B"], 10, 7),
        ValueError,
        ("tp=7", "4 KV heads"),
    ),
    Case(
        "tp not dividing KV heads",
        lambda: max_requests_per_gpu(_shape(12, 6, 64), 10, 4),
        ValueError,
        ("tp=4", "6"),
    ),
    Case("tp 0", lambda: max_requests_per_gpu(LLAMA3_8B, 10, 0), ValueError, ("tp", "0")),
    Case("tp as a float", lambda: max_requests_per_gpu(LLAMA3_8B, 10, 2.0), TypeError, ("tp", "float")),
    Case("no tokens", lambda: max_requests_per_gpu(LLAMA3_8B, 0, 1), ValueError, ("seq_len", "0")),
    Case(
        "utilization 90",
        lambda: max_requests_per_gpu(LLAMA3_8B, 10, 1, 80.0, 90),
        ValueError,
        ("utilization", "90"),
    ),
    Case(
        "utilization 0",
        lambda: max_requests_per_gpu(LLAMA3_8B, 10, 1, 80.0, 0.0),
        ValueError,
        ("utilization",),
    ),
    Case(
        "negative GPU", lambda: max_requests_per_gpu(LLAMA3_8B, 10, 1, -80.0), ValueError, ("gpu_gib", "-80")
    ),
    Case(
        "GPU as text", lambda: max_requests_per_gpu(LLAMA3_8B, 10, 1, "80GB"), TypeError, ("gpu_gib", "str")
    ),
    Case(
        "unknown weight dtype",
        lambda: max_requests_per_gpu(LLAMA3_8B, 10, 1, weight_dtype="b16"),
        ValueError,
        ("b16",),
    ),
]


@pytest.mark.parametrize("case", params(BAD))
def test_bad_input_is_one_clear_line(case: Case) -> None:
    assert_clear_error(case)
