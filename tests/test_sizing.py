"""kvlib.sizing's KV GiB, GPUs for a load and shared-prefix bytes (chapter 09's first sizing drills).

Each value is checked against a computation done by hand in the test (or in its comment), or against an
independent simulation (a block manager that allocates the shared prompt's full blocks once), so a change
of formula shows up as a wrong number, not as two implementations agreeing with each other. Bad input
ends in one line that names the argument.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from bad_input import Case, assert_clear_error, params

from kvlib.memory import MODEL_CONFIGS, GiB, ModelShape, kv_cache_bytes
from kvlib.sizing import gpus_needed, kv_gib, prefix_cached_bytes, weight_bytes

pytestmark = pytest.mark.ch09

LLAMA2_7B = MODEL_CONFIGS["Llama-2-7B"]  # 32 layers, 32 heads of 128 (MHA), 6.7B
LLAMA2_70B = MODEL_CONFIGS["Llama-2-70B"]  # 80 layers, 64 query heads, 8 KV heads of 128, 69B
LLAMA3_8B = MODEL_CONFIGS["Llama-3-8B"]  # 32 layers, 32 query heads, 8 KV heads of 128, 8.0B
LLAMA31_405B = MODEL_CONFIGS["Llama-3.1-405B"]  # 126 layers, 128 query heads, 8 KV heads of 128, 405B

# The chapter's worked example: 48 layers, 96 heads of 128 (width 12,288), with all 96 or 8 KV heads.
WORKED_MHA = ModelShape("worked MHA", 48, 96, 96, 128, 12288, 2048, 175.0, "t")
WORKED_GQA = ModelShape("worked GQA-8", 48, 96, 8, 128, 12288, 2048, 175.0, "t")


def _shape(layers: int, heads: int, kv_heads: int, head_dim: int, params_b: float = 1.0, hidden: int = 0):
    hidden = hidden or heads * head_dim
    return ModelShape("test", layers, heads, kv_heads, head_dim, hidden, 4096, params_b, "t")


# --- kv_gib -------------------------------------------------------------------------------------------------


def test_worked_example_is_4_5_gib_mha_and_0_375_gib_gqa8() -> None:
    # 2 (K, V) * 48 layers * 12288 numbers * 2048 tokens * 2 bytes = 4,831,838,208 bytes = 4.5 * 2**30
    assert kv_gib(WORKED_MHA, 2048) == 4.5
    # GQA-8: the width per token is 8 * 128 = 1024, 12x less: 0.375 GiB
    assert kv_gib(WORKED_GQA, 2048) == 0.375
    assert kv_gib(WORKED_MHA, 2048, 1, "fp16") / kv_gib(WORKED_GQA, 2048, 1, "fp16") == 12


def test_llama2_70b_100_requests_of_2048_tokens_is_62_5_gib() -> None:
    # 2 * 80 layers * 8 KV heads * 128 * 2 bytes = 327,680 bytes per token; * 204,800 tokens = 62.5 GiB
    assert kv_gib(LLAMA2_70B, 2048, 100, "fp16") == 62.5
    assert kv_gib(LLAMA2_7B, 4096) == 2.0  # 2 * 32 * 4096 * 4096 * 2 bytes: the classic 2 GiB


@pytest.mark.parametrize(
    ("dtype", "bytes_per"),
    [
        ("fp32", 4),
        (torch.float32, 4),
        ("fp16", 2),
        (torch.float16, 2),
        ("bf16", 2),
        (torch.bfloat16, 2),
        ("fp8", 1),
        (torch.float8_e4m3fn, 1),
        ("int8", 1),
        (torch.int8, 1),
        ("int4", 0.5),
    ],
)
def test_kv_gib_dtype_spellings(dtype, bytes_per: float) -> None:
    # Llama-3-8B: 2 * 32 * 8 * 128 = 65,536 elements per token; 3 requests of 1000 tokens
    assert kv_gib(LLAMA3_8B, 1000, 3, dtype) == 65536 * 3000 * bytes_per / 2**30


def test_kv_gib_is_a_float_linear_in_tokens_and_batch() -> None:
    one = kv_gib(LLAMA3_8B, 1)
    assert type(one) is float
    assert type(kv_gib(LLAMA2_7B, 4096)) is float  # a whole number of GiB is still a float
    assert kv_gib(LLAMA3_8B, 0, 5) == 0.0
    assert kv_gib(LLAMA3_8B, 131072, 1000) == pytest.approx(one * 131072 * 1000, rel=1e-12)
    assert kv_gib(LLAMA3_8B, 777, 13) == pytest.approx(one * 777 * 13, rel=1e-12)


def test_kv_gib_uses_the_kv_width_not_the_model_width() -> None:
    # Gemma-7B: 16 heads of 256 = 4096 wide keys, while hidden_size is 3072
    gemma = MODEL_CONFIGS["Gemma-7B"]
    assert kv_gib(gemma, 1000) == 2 * 28 * 16 * 256 * 1000 * 2 / GiB
    odd = _shape(3, 12, 4, 80, hidden=1000)
    assert kv_gib(odd, 1001, 7, "fp32") == 2 * 3 * 4 * 80 * 1001 * 7 * 4 / GiB


# --- gpus_needed --------------------------------------------------------------------------------------------


def test_llama2_70b_100_requests_of_2048_tokens_need_3_gpus() -> None:
    # weights 69e9 * 2 = 138e9 bytes; KV 62.5 GiB = 67,108,864,000 bytes; usable 0.9 * 80 * 2**30 =
    # 77,309,411,328 bytes per GPU: 205,108,864,000 / 77,309,411,328 = 2.65 -> 3
    assert gpus_needed(LLAMA2_70B, 100, 2048) == 3
    assert gpus_needed(LLAMA2_70B, 0, 2048) == 2  # 138e9 / 77.3e9 = 1.79: the weights alone need 2
    # an fp8 cache halves the KV: 171.55e9 / 77.3e9 = 2.22 -> still 3
    assert gpus_needed(LLAMA2_70B, 100, 2048, kv_dtype="fp8") == 3
    # 1000 requests: 138e9 + 671.1e9 = 809.1e9 bytes / 77.3e9 = 10.47 -> 11
    assert gpus_needed(LLAMA2_70B, 1000, 2048) == 11


def test_gpus_needed_rounds_up_and_a_full_gpu_is_enough() -> None:
    no_weights = _shape(2, 4, 2, 128, params_b=0.0)  # 2 * 2 * 2 * 128 * 2 = 2048 bytes per token (fp16)
    # 1024 requests of 4096 tokens: 2048 * 4096 * 1024 = 8 GiB exactly: 8 GPUs of 1 GiB at 100%, not 9
    assert gpus_needed(no_weights, 1024, 4096, 1.0, 1.0, "fp16", "fp16") == 8
    assert gpus_needed(no_weights, 1025, 4096, 1.0, 1.0, "fp16", "fp16") == 9
    assert gpus_needed(no_weights, 1024, 4096, 1.0, 0.5, "fp16", "fp16") == 16
    assert gpus_needed(no_weights, 0, 4096, 1.0, 1.0) == 1  # nothing to hold: still one GPU
    assert gpus_needed(no_weights, 5, 0, 1.0, 1.0) == 1


def test_gpus_needed_counts_weights_once_in_their_own_dtype() -> None:
    # 13B parameters: 26e9 bytes in bf16, 52e9 in fp32, 6.5e9 in int4; usable 0.9 * 4 GiB = 3,865,470,566.4
    llama13 = MODEL_CONFIGS["Llama-2-13B"]
    assert weight_bytes(llama13, "bf16") == 26e9
    assert gpus_needed(llama13, 0, 1, 4.0, 0.9, "bf16") == math.ceil(26e9 / (0.9 * 4 * GiB)) == 7
    assert gpus_needed(llama13, 0, 1, 4.0, 0.9, torch.float32) == 14  # 52e9 / 3.87e9 = 13.45
    assert gpus_needed(llama13, 0, 1, 4.0, 0.9, "int4") == 2  # 6.5e9 / 3.87e9 = 1.68
    # 50 requests of 4096 tokens add 2 * 40 * 40 * 128 * 2 * 4096 * 50 = 167,772,160,000 bytes (bf16)
    kv = kv_cache_bytes(40, 40, 128, 4096, 50, "bf16")
    assert kv == 167_772_160_000
    assert gpus_needed(llama13, 50, 4096, 4.0, 0.9) == math.ceil((26e9 + kv) / (0.9 * 4 * GiB)) == 51
    assert gpus_needed(llama13, 50, 4096, 4.0, 0.9, kv_dtype="int8") == math.ceil(
        (26e9 + kv / 2) / (0.9 * 4 * GiB)
    )


def test_gpus_needed_is_an_int_that_holds_the_load() -> None:
    for shape, n, seq, gib, util in itertools.product(
        MODEL_CONFIGS.values(), (0, 1, 37, 1000), (1, 4096, 131072), (24, 80.0, 141.0), (0.5, 0.9, 1)
    ):
        k = gpus_needed(shape, n, seq, gib, util)
        assert type(k) is int and k >= 1
        load = shape.params_b * 1e9 * 2 + kv_cache_bytes(
            shape.num_layers, shape.num_kv_heads, shape.head_dim, seq, n, "bf16"
        )
        usable = util * gib * GiB
        assert load <= k * usable * (1 + 1e-12)
        assert k == 1 or load > (k - 1) * usable * (1 - 1e-12)


def test_gpus_needed_at_128k_tokens_and_1000_requests() -> None:
    # Llama-3.1-405B: 516,096 bytes per token (bf16); 1000 * 131072 tokens = 67,645,734,912,000 bytes;
    # weights 810e9; / 77,309,411,328 = 885.5 -> 886
    assert gpus_needed(LLAMA31_405B, 1000, 131072) == 886


# --- prefix_cached_bytes ------------------------------------------------------------------------------------


def test_a_system_prompt_shared_by_1000_users() -> None:
    # Llama-3-8B: 131,072 bytes per token (fp16). 1000-token prompt in blocks of 16: 62 full blocks shared,
    # each user holds ceil((8 + 200) / 16) = 13 blocks: 62 + 13,000 blocks of 16 tokens
    per_token = 2 * 32 * 8 * 128 * 2
    assert prefix_cached_bytes(LLAMA3_8B, 1000, 200, 1000) == 13_062 * 16 * per_token == 27_392_999_424
    # without sharing each user holds ceil(1200 / 16) = 75 blocks: 5.7x more
    assert prefix_cached_bytes(LLAMA3_8B, 1000, 200, 1) == 75 * 16 * per_token
    # blocks of one token: 1000 prompt tokens + 1000 * 200; blocks of 256: 3 shared, 2 per user
    assert prefix_cached_bytes(LLAMA3_8B, 1000, 200, 1000, 1) == (1000 + 200_000) * per_token
    assert prefix_cached_bytes(LLAMA3_8B, 1000, 200, 1000, 256) == (3 + 2000) * 256 * per_token


@pytest.mark.parametrize(
    ("prefix", "suffix", "users", "block", "blocks"),
    [
        (50, 37, 4, 16, 3 + 4 * 3),  # 2 prompt tokens + 37 of the user's: 39 tokens, 3 own blocks
        (50, 30, 4, 16, 3 + 4 * 2),  # 2 + 30 = 32: exactly 2 own blocks
        (40, 8, 6, 16, 2 + 6 * 1),  # the partial block and the suffix fill one block
        (40, 16, 6, 16, 2 + 6 * 2),  # packed together: 24 tokens, 2 blocks (apart it would be 1 + 1 too)
        (5, 3, 3, 16, 0 + 3 * 1),  # a prompt shorter than a block shares nothing
        (64, 48, 5, 16, 4 + 5 * 3),  # a prompt of whole blocks
        (64, 0, 5, 16, 4),  # ... and no suffix: the users hold nothing of their own
        (0, 33, 5, 16, 5 * 3),  # no prompt
        (0, 0, 5, 16, 0),
        (77, 50, 0, 32, 0),  # no users, no bytes
        (77, 50, 1, 32, 4),  # one user: ceil(127 / 32) = 4, as if nothing were shared
        (17, 1, 2, 16, 1 + 2 * 1),
        (31, 1, 2, 16, 1 + 2 * 1),  # 15 + 1 = 16: one own block
        (31, 2, 2, 16, 1 + 2 * 2),  # 15 + 2 = 17: two
    ],
)
def test_prefix_blocks_by_hand(prefix: int, suffix: int, users: int, block: int, blocks: int) -> None:
    shape = _shape(3, 12, 4, 80)  # 2 * 3 * 4 * 80 * 2 = 3840 bytes per token (fp16)
    got = prefix_cached_bytes(shape, prefix, suffix, users, block)
    assert got == blocks * block * 3840
    assert type(got) is int


def _simulated_blocks(prefix: int, suffix: int, users: int, block: int) -> int:
    """A block manager with prefix caching, token by token: a full block is found by the hash of every token
    up to its end (the prompt's tokens are the same for all users, the suffixes differ)."""
    cached: set[tuple] = set()
    allocated = 0
    for user in range(users):
        tokens = [("prompt", i) for i in range(prefix)] + [(f"user{user}", i) for i in range(suffix)]
        for start in range(0, len(tokens), block):
            chunk = tuple(tokens[: start + block])
            full = len(chunk) == start + block
            if full and chunk in cached:
                continue
            allocated += 1
            if full:
                cached.add(chunk)
    return allocated


def test_prefix_cached_bytes_matches_a_simulated_block_manager() -> None:
    shape = _shape(1, 1, 1, 1)  # 4 bytes per token (fp16)
    for prefix, suffix, users, block in itertools.product(
        (0, 1, 7, 15, 16, 17, 32, 40), (0, 1, 8, 9, 16, 33), (0, 1, 2, 5), (1, 4, 16)
    ):
        expected = _simulated_blocks(prefix, suffix, users, block) * block * 4
        assert prefix_cached_bytes(shape, prefix, suffix, users, block) == expected, (
            prefix,
            suffix,
            users,
            block,
        )


def test_prefix_cached_bytes_dtypes_and_large_loads() -> None:
    # int4: half a byte per element; 2 * 32 * 8 * 128 = 65,536 elements per token
    assert prefix_cached_bytes(LLAMA3_8B, 1000, 200, 1000, 16, "int4") == 13_062 * 16 * 32_768
    assert prefix_cached_bytes(LLAMA3_8B, 1000, 200, 1000, 16, torch.float32) == 13_062 * 16 * 262_144
    # a 128k-token prompt shared by 100,000 users, 256-token blocks, fp8 (258,048 bytes per token):
    # 511 full blocks shared, each user (255 + 4097) / 256 = 17 blocks exactly
    got = prefix_cached_bytes(LLAMA31_405B, 131071, 4097, 100_000, 256, "fp8")
    assert got == (511 + 1_700_000) * 256 * 258_048
    assert type(got) is int


def test_prefix_sharing_never_costs_more_than_no_sharing() -> None:
    for prefix, suffix, users, block in itertools.product(
        (0, 5, 16, 100, 1000), (0, 3, 50), (0, 1, 9), (1, 16, 256)
    ):
        shared = prefix_cached_bytes(LLAMA3_8B, prefix, suffix, users, block)
        alone = users * prefix_cached_bytes(LLAMA3_8B, prefix, suffix, 1, block)
        assert shared <= alone
        if prefix < block or users <= 1:  # nothing to share
            assert shared == alone


# --- bad input ----------------------------------------------------------------------------------------------

BAD = [
    Case("kv_gib shape as a name", lambda: kv_gib("Llama-2-70B", 2048), TypeError, ("shape", "ModelShape")),
    Case("kv_gib float tokens", lambda: kv_gib(LLAMA3_8B, 2048.0), TypeError, ("seq_len", "float")),
    Case("kv_gib negative tokens", lambda: kv_gib(LLAMA3_8B, -1), ValueError, ("seq_len", "-1")),
    Case("kv_gib negative batch", lambda: kv_gib(LLAMA3_8B, 10, -2), ValueError, ("batch", "-2")),
    Case("kv_gib batch True", lambda: kv_gib(LLAMA3_8B, 10, True), TypeError, ("batch", "bool")),
    Case("kv_gib unknown dtype", lambda: kv_gib(LLAMA3_8B, 10, 1, "fp17"), ValueError, ("fp17",)),
    Case("kv_gib dtype as bits", lambda: kv_gib(LLAMA3_8B, 10, 1, 16), TypeError, ("dtype", "16")),
    Case(
        "gpus shape as a name", lambda: gpus_needed("Llama-2-70B", 1, 10), TypeError, ("shape", "ModelShape")
    ),
    Case("gpus negative requests", lambda: gpus_needed(LLAMA3_8B, -1, 10), ValueError, ("n_requests", "-1")),
    Case("gpus float requests", lambda: gpus_needed(LLAMA3_8B, 1.5, 10), TypeError, ("n_requests", "float")),
    Case("gpus negative tokens", lambda: gpus_needed(LLAMA3_8B, 1, -10), ValueError, ("seq_len", "-10")),
    Case(
        "gpus utilization 90",
        lambda: gpus_needed(LLAMA3_8B, 1, 10, 80.0, 90),
        ValueError,
        ("utilization", "90"),
    ),
    Case(
        "gpus utilization 0", lambda: gpus_needed(LLAMA3_8B, 1, 10, 80.0, 0.0), ValueError, ("utilization",)
    ),
    Case(
        "gpus utilization bool",
        lambda: gpus_needed(LLAMA3_8B, 1, 10, 80.0, True),
        TypeError,
        ("utilization",),
    ),
    Case("gpus GPU as text", lambda: gpus_needed(LLAMA3_8B, 1, 10, "80GB"), TypeError, ("gpu_gib", "str")),
    Case("gpus GPU 0", lambda: gpus_needed(LLAMA3_8B, 1, 10, 0), ValueError, ("gpu_gib", "0")),
    Case(
        "gpus weight dtype", lambda: gpus_needed(LLAMA3_8B, 1, 10, weight_dtype="b16"), ValueError, ("b16",)
    ),
    Case("gpus kv dtype", lambda: gpus_needed(LLAMA3_8B, 1, 10, kv_dtype="fp12"), ValueError, ("fp12",)),
    Case(
        "prefix shape as a name",
        lambda: prefix_cached_bytes("Llama-3-8B", 100, 10, 5),
        TypeError,
        ("shape", "ModelShape"),
    ),
    Case(
        "prefix block 0",
        lambda: prefix_cached_bytes(LLAMA3_8B, 100, 10, 5, 0),
        ValueError,
        ("block_size", "0"),
    ),
    Case(
        "prefix negative users",
        lambda: prefix_cached_bytes(LLAMA3_8B, 100, 10, -1),
        ValueError,
        ("n_users", "-1"),
    ),
    Case(
        "prefix float users",
        lambda: prefix_cached_bytes(LLAMA3_8B, 100, 10, 5.0),
        TypeError,
        ("n_users", "float"),
    ),
    Case(
        "prefix negative prompt",
        lambda: prefix_cached_bytes(LLAMA3_8B, -100, 10, 5),
        ValueError,
        ("prefix_len", "-100"),
    ),
    Case(
        "prefix negative suffix",
        lambda: prefix_cached_bytes(LLAMA3_8B, 100, -1, 5),
        ValueError,
        ("suffix_len", "-1"),
    ),
    Case(
        "prefix unknown dtype",
        lambda: prefix_cached_bytes(LLAMA3_8B, 100, 10, 5, 16, "fp17"),
        ValueError,
        ("fp17",),
    ),
    Case(
        "prefix NumPy float block",
        lambda: prefix_cached_bytes(LLAMA3_8B, 100, 10, 5, np.float64(16)),
        TypeError,
        ("block_size",),
    ),
]


@pytest.mark.parametrize("case", params(BAD))
def test_bad_input_is_one_clear_line(case: Case) -> None:
    assert_clear_error(case)


def test_numpy_integers_are_accepted() -> None:
    assert prefix_cached_bytes(LLAMA3_8B, np.int64(1000), 200, np.int32(1000)) == 27_392_999_424
    assert gpus_needed(LLAMA2_70B, np.int64(100), 2048) == 3
    assert kv_gib(LLAMA2_70B, np.int64(2048), 100) == 62.5
