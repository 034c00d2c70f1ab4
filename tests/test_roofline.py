"""kvlib.roofline: the GPUs' ridge points, the roofline, and the FLOPs and bytes of one decode step.

Values are computed by hand in the tests (the datasheet numbers, the four formulas of chapter 09), so a
change of formula shows up as a wrong number. The claims chapter 09 makes in prose are tested too: the
matmuls' intensity equals the batch in bf16, attention's does not move with the batch and equals the
query heads per KV head, and a step's floor is the bytes over the bandwidth until the batch is huge.
"""

from __future__ import annotations

import pytest
import torch
from bad_input import Case, assert_clear_error, params

from kvlib.memory import MODEL_CONFIGS, ModelShape
from kvlib.roofline import GPU_SPECS, GpuSpec, decode_step_costs, intensities, step_time_floor

pytestmark = pytest.mark.ch09

H100 = GPU_SPECS["H100 SXM"]
LLAMA3_8B = MODEL_CONFIGS["Llama-3-8B"]  # 32 layers, 32 query heads, 8 KV heads of 128, 8.0B
LLAMA3_70B = MODEL_CONFIGS["Llama-3-70B"]  # 80 layers, 64 query heads, 8 KV heads of 128, 70.6B
LLAMA2_7B = MODEL_CONFIGS["Llama-2-7B"]  # 32 layers, 32 heads, MHA, 6.7B


# --- GPUs and the roofline -------------------------------------------------------------------------------


def test_ridge_points_from_the_datasheets() -> None:
    assert H100.ridge_point == pytest.approx(989.4e12 / 3.35e12)
    assert 295 < H100.ridge_point < 296
    assert GPU_SPECS["A100 80GB SXM"].ridge_point == pytest.approx(312e12 / 2.039e12)  # ~153
    assert GPU_SPECS["H200 SXM"].ridge_point == pytest.approx(989.4 / 4.8)  # same chip, more bandwidth
    assert GPU_SPECS["L40S"].ridge_point == pytest.approx(362.05 / 0.864)
    for name, gpu in GPU_SPECS.items():
        assert gpu.name == name and gpu.source


def test_attainable_flops_is_the_lower_of_the_two_ceilings() -> None:
    assert H100.attainable_flops(1.0) == pytest.approx(3.35e12)
    assert H100.attainable_flops(100.0) == pytest.approx(335e12)
    assert H100.attainable_flops(H100.ridge_point) == pytest.approx(H100.peak_flops)
    assert H100.attainable_flops(10_000.0) == H100.peak_flops
    toy = GpuSpec("toy", 100.0, 10.0, "test")
    assert toy.ridge_point == 10.0
    assert [toy.attainable_flops(x) for x in (0.5, 10.0, 20.0)] == [5.0, 100.0, 100.0]


# --- decode_step_costs -----------------------------------------------------------------------------------


def test_decode_step_costs_by_hand_llama3_8b() -> None:
    costs = decode_step_costs(LLAMA3_8B, 4, 1000)  # bf16 by default
    assert set(costs) == {"matmul_flops", "matmul_bytes", "attention_flops", "attention_bytes"}
    assert all(type(v) is float for v in costs.values())
    assert costs["matmul_flops"] == pytest.approx(2 * 8.0e9 * 4, rel=1e-12)
    assert costs["matmul_bytes"] == pytest.approx(8.0e9 * 2, rel=1e-12)  # read once for the batch of 4
    assert costs["attention_flops"] == 4 * 32 * 32 * 128 * 1000 * 4  # every query head
    assert costs["attention_bytes"] == 2 * 32 * 8 * 128 * 1000 * 4 * 2  # the KV heads' cache


@pytest.mark.parametrize(
    ("dtype", "b"), [("fp32", 4), (torch.float32, 4), ("fp16", 2), ("int8", 1), ("int4", 0.5)]
)
def test_dtype_scales_the_bytes_not_the_flops(dtype, b: float) -> None:
    costs = decode_step_costs(LLAMA3_8B, 2, 300, dtype)
    bf16 = decode_step_costs(LLAMA3_8B, 2, 300, "bf16")
    assert costs["matmul_bytes"] == pytest.approx(bf16["matmul_bytes"] * b / 2, rel=1e-12)
    assert costs["attention_bytes"] == pytest.approx(bf16["attention_bytes"] * b / 2, rel=1e-12)
    assert costs["matmul_flops"] == bf16["matmul_flops"]
    assert costs["attention_flops"] == bf16["attention_flops"]


@pytest.mark.parametrize("batch", [1, 7, 64, 1000])
def test_matmul_intensity_is_the_batch_and_attention_is_the_gqa_ratio_in_bf16(batch: int) -> None:
    for shape, ratio in ((LLAMA3_70B, 8), (LLAMA3_8B, 4), (LLAMA2_7B, 1)):
        i = intensities(decode_step_costs(shape, batch, 4096, "bf16"))
        assert i["matmul"] == pytest.approx(batch)
        assert i["attention"] == pytest.approx(ratio)  # 2 * (H / H_kv) / 2 bytes, whatever the batch
        assert min(i["matmul"], i["attention"]) <= i["step"] <= max(i["matmul"], i["attention"])


def test_attention_intensity_rises_with_fewer_bytes_per_number() -> None:
    assert intensities(decode_step_costs(LLAMA3_8B, 3, 100, "int8"))["attention"] == pytest.approx(8.0)
    assert intensities(decode_step_costs(LLAMA2_7B, 3, 100, "fp32"))["attention"] == pytest.approx(0.5)


def test_no_cached_tokens_leaves_only_the_matmuls() -> None:
    costs = decode_step_costs(LLAMA3_8B, 1, 0)
    assert costs["attention_flops"] == costs["attention_bytes"] == 0.0
    assert intensities(costs)["attention"] == 0.0
    assert step_time_floor(costs, H100) == pytest.approx(16e9 / 3.35e12)  # the weights over the bandwidth


def test_step_time_floor_is_bytes_over_bandwidth_until_the_batch_is_huge() -> None:
    small = decode_step_costs(LLAMA3_70B, 1, 4096)
    moved = 70.6e9 * 2 + 2 * 80 * 8 * 128 * 4096 * 2
    assert step_time_floor(small, H100) == pytest.approx(moved / 3.35e12)
    huge = decode_step_costs(LLAMA3_8B, 4096, 1)  # 6.6e13 FLOPs against 16 GB: arithmetic-bound
    flops = 2 * 8e9 * 4096 + 4 * 32 * 32 * 128 * 1 * 4096
    assert step_time_floor(huge, H100) == pytest.approx(flops / 989.4e12)


def test_the_cache_passes_the_weights_as_the_batch_grows() -> None:
    # the claim of chapter 09's table: at 4096 tokens, the MHA model's caches outweigh its weights first
    def cache_over_weights(shape: ModelShape, batch: int) -> float:
        c = decode_step_costs(shape, batch, 4096)
        return c["attention_bytes"] / c["matmul_bytes"]

    assert cache_over_weights(LLAMA2_7B, 1) < 1 < cache_over_weights(LLAMA2_7B, 16)
    assert cache_over_weights(LLAMA3_8B, 16) < 1 < cache_over_weights(LLAMA3_8B, 64)
    assert cache_over_weights(LLAMA3_70B, 64) < 1 < cache_over_weights(LLAMA3_70B, 256)


# --- bad input -------------------------------------------------------------------------------------------

BAD = [
    Case(
        "shape as a name", lambda: decode_step_costs("Llama-3-8B", 1, 10), TypeError, ("shape", "ModelShape")
    ),
    Case("batch 0", lambda: decode_step_costs(LLAMA3_8B, 0, 10), ValueError, ("batch", "0")),
    Case("batch as a float", lambda: decode_step_costs(LLAMA3_8B, 2.0, 10), TypeError, ("batch", "float")),
    Case("negative context", lambda: decode_step_costs(LLAMA3_8B, 1, -1), ValueError, ("context_len", "-1")),
    Case("unknown dtype", lambda: decode_step_costs(LLAMA3_8B, 1, 10, "bf61"), ValueError, ("bf61",)),
    Case("dtype as a number", lambda: decode_step_costs(LLAMA3_8B, 1, 10, 2), TypeError, ("dtype",)),
]


@pytest.mark.parametrize("case", params(BAD))
def test_bad_input_is_one_clear_line(case: Case) -> None:
    assert_clear_error(case)
