"""kvlib.quant: the byte layout of packed codes, the error bound, hard input, bytes, and real keys."""

from __future__ import annotations

import pytest
import torch
from bad_input import Case, assert_clear_error, params
from hypothesis import given, settings
from hypothesis import strategies as st

from kvlib.memory import bytes_per_element, cache_nbytes
from kvlib.quant import (
    BITS,
    GRANULARITIES,
    SCHEMES,
    QuantizedTensor,
    dequantize,
    pack_codes,
    quantize,
    quantize_fp8,
    unpack_codes,
)

pytestmark = pytest.mark.ch04

DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def u8(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.uint8)


def codes_of(q: QuantizedTensor) -> torch.Tensor:
    return unpack_codes(q.codes, q.bits, q.shape[-1])


def scale_per_element(q: QuantizedTensor) -> torch.Tensor:
    """q.scales repeated over the G elements of each group: one scale per element of x."""
    dim = -1 if q.granularity == "per_token" else -2
    return q.scales.double().repeat_interleave(q.group_size, dim=dim)  # (..., T, D)


# --- byte layout: compare the packed bytes with bytes written by hand -----------------------------


@pytest.mark.parametrize(
    ("bits", "codes", "expected"),
    [
        # int4: element 2j in the low nibble, 2j + 1 in the high nibble; an odd tail is padded with 0
        (4, [3, 10, 15, 0, 1], [0xA3, 0x0F, 0x01]),
        (4, [0, 15, 15, 15], [0xF0, 0xFF]),
        # int2: elements 4j .. 4j + 3 in bits 0-1, 2-3, 4-5, 6-7
        (2, [1, 2, 3, 0, 3, 3], [0b00_11_10_01, 0b00_00_11_11]),
        (2, [0, 0, 0, 3], [0b11_00_00_00]),
        (8, [0, 7, 255], [0, 7, 255]),
    ],
)
def test_packed_bytes_follow_the_documented_layout(bits, codes, expected):
    packed = pack_codes(u8(*codes), bits)
    assert packed.tolist() == expected
    assert unpack_codes(u8(*expected), bits, len(codes)).tolist() == codes


def test_rows_are_packed_independently_along_the_last_axis():
    codes = torch.tensor([[1, 2, 3], [4, 5, 6]], dtype=torch.uint8)
    assert pack_codes(codes, 4).tolist() == [[0x21, 0x03], [0x54, 0x06]]


def test_quantized_codes_use_the_layout_with_the_symmetric_offset():
    # 4-bit symmetric, scale 1: q = [-7, -1, 0, 7] stored as q + 8 = [1, 7, 8, 15]
    q = quantize(torch.tensor([[-7.0, -1.0, 0.0, 7.0]]), bits=4)
    assert q.scales.tolist() == [[1.0]]
    assert q.codes.tolist() == [[0x71, 0xF8]]
    # 2-bit symmetric: q in {-1, 0, 1} stored as {1, 2, 3}
    q2 = quantize(torch.tensor([[-2.0, 0.0, 2.0, 2.0]]), bits=2)
    assert q2.codes.tolist() == [[0b11_11_10_01]]


@settings(max_examples=30, deadline=None)
@given(bits=st.sampled_from(BITS), data=st.data())
def test_unpack_inverts_pack_for_any_row_length(bits, data):
    length = data.draw(st.integers(0, 13))
    codes = data.draw(st.lists(st.integers(0, 2**bits - 1), min_size=length, max_size=length))
    packed = pack_codes(u8(*codes), bits)
    assert packed.shape == (-(-length * bits // 8),)
    assert unpack_codes(packed, bits, length).tolist() == codes


# --- error bound --------------------------------------------------------------------------------------


def _divisor(draw, n: int) -> int:
    return draw(st.sampled_from([g for g in range(1, n + 1) if n % g == 0]))


@st.composite
def quant_cases(draw):
    lead = draw(st.lists(st.integers(1, 3), max_size=2))
    T, D = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    dtype = draw(st.sampled_from(DTYPES))
    granularity = draw(st.sampled_from(GRANULARITIES))
    group = draw(st.none() | st.just(_divisor(draw, D if granularity == "per_token" else T)))
    torch.manual_seed(draw(st.integers(0, 2**16)))
    magnitude = 10.0 ** draw(st.integers(-6, 1 if dtype == torch.float16 else 4))  # fp16 ends at 65504
    x = torch.randn(*lead, T, D) * magnitude + draw(st.sampled_from([0.0, 3.0, -50.0])) * magnitude
    x[..., : D // 3] *= draw(st.sampled_from([1.0, 20.0]))  # outlier channels, as real keys have
    return x.to(dtype), draw(st.sampled_from(BITS)), draw(st.sampled_from(SCHEMES)), granularity, group


@settings(max_examples=300, deadline=None)
@given(case=quant_cases())
def test_error_is_at_most_half_a_step(case):
    """|x - x_hat| <= s/2, plus the rounding of x_hat to x's dtype and float32's own rounding."""
    x, bits, scheme, granularity, group = case
    q = quantize(x, bits, scheme, granularity, group)
    x_hat = q.dequantize()
    assert x_hat.dtype == x.dtype and x_hat.shape == x.shape
    s, x64 = scale_per_element(q), x.double()
    rounding = torch.finfo(x.dtype).eps * (x64.abs() + s) + 8 * torch.finfo(torch.float32).eps * (
        x64.abs() + s * 2**bits
    )
    error = (x64 - x_hat.double()).abs()
    worst = (error - s / 2 - rounding).max()
    assert worst <= 0, (
        f"error exceeds s/2 by {worst.item():.3g} ({scheme}, {bits} bits, {granularity}, G={group})"
    )


def test_codes_stay_in_range_when_the_zero_point_rounds_up():
    # scale 1, zero-point round(1.5) = 2; 13.5 / 1 rounds (half to even) to 14, + 2 = 16: one past 15
    x = torch.tensor([[-1.5, 13.5]])
    q = quantize(x, bits=4, scheme="asymmetric")
    assert q.scales.item() == 1.0 and q.zero_points.item() == 2
    assert codes_of(q).tolist() == [[0, 15]]  # clamped, not wrapped to 0 in the nibble
    assert q.codes.tolist() == [[0xF0]]
    assert (x - q.dequantize()).abs().max().item() == 0.5  # half a step, as promised


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_scales_are_rounded_up_to_their_dtype(dtype):
    """A scale rounded *down* to bf16 leaves the group's largest value past the last code: at 8 bits
    with a zero-point that costs up to a whole step. L * s (qmax * s) must cover the range."""
    x = (torch.randn(256, 3) * 10).to(dtype)
    x32 = x.float()
    for bits in BITS:
        kivi, symmetric = quantize(x, bits, "kivi"), quantize(x, bits, "symmetric")
        span, absmax = x32.amax(-1) - x32.amin(-1), x32.abs().amax(-1)
        assert (kivi.scales.float()[:, 0] * (2**bits - 1) >= span * (1 - 1e-6)).all()
        assert (symmetric.scales.float()[:, 0] * (2 ** (bits - 1) - 1) >= absmax * (1 - 1e-6)).all()


# --- hard input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("bits", BITS)
def test_all_zero_groups_round_trip_exactly(dtype, scheme, bits):
    x = torch.randn(2, 8, 4).to(dtype)
    x[0] = 0  # whole tokens of zeros: per-token groups with a zero range (and per-channel ones)
    x[1, :, 1] = 0  # a zero channel: a per-channel group with a zero range
    for granularity in GRANULARITIES:
        q = quantize(x, bits, scheme, granularity)
        assert torch.isfinite(q.scales).all()
        x_hat = q.dequantize()
        assert torch.equal(x_hat[0], x[0])
        if granularity == "per_channel":
            assert torch.equal(x_hat[1, :, 1], x[1, :, 1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("value", [1.0, -3.7, 1e-30, 6e4, -0.1])
def test_constant_groups_round_trip_exactly_under_kivi(dtype, value):
    x = torch.full((3, 8, 4), value).to(dtype)
    x[1] = torch.randn(8, 4).to(dtype)  # other groups may vary
    for granularity, constant in (("per_token", x[0]), ("per_channel", x[2])):
        for bits in BITS:
            x_hat = quantize(x, bits, "kivi", granularity).dequantize()
            assert torch.equal(x_hat[0 if granularity == "per_token" else 2], constant)


@pytest.mark.parametrize("scheme", ["symmetric", "asymmetric"])
def test_constant_groups_are_within_one_rounding_under_a_scale_only_grid(scheme):
    """x_hat = qmax * fl(c / qmax) is c only up to float rounding: within one ulp for normal scales."""
    c = torch.randn(512, 1).repeat(1, 8)  # 512 constant rows
    for bits in BITS:
        x_hat = quantize(c, bits, scheme).dequantize()
        assert ((x_hat - c).abs() <= torch.finfo(torch.float32).eps * c.abs()).all()


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(
    ("dtype", "values"),
    [
        (torch.float32, [1e-42, 3e-42, 0.0, 2e-42]),  # float32 subnormals: range / L would underflow
        (torch.float32, [1.0, 1.0 + 2**-23, 1.0, 1.0]),  # one ulp of range
        (torch.float16, [1e-7, 0.0, 2e-7, 1e-7]),  # float16 subnormals
        (torch.bfloat16, [1e-38, 2e-38, 0.0, 3e-38]),
    ],
)
def test_tiny_ranges_do_not_underflow_the_scale(scheme, dtype, values):
    x = torch.tensor([values], dtype=dtype)
    for bits in BITS:
        q = quantize(x, bits, scheme)
        floor = torch.finfo(dtype).tiny * torch.finfo(dtype).eps  # the smallest subnormal
        assert (q.scales >= floor).all(), "the scale went below the smallest positive number"
        x_hat = q.dequantize()
        assert torch.isfinite(x_hat).all()
        assert ((x.double() - x_hat.double()).abs() <= q.scales.double() / 2).all()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("fp8", [False, True])
def test_nan_and_inf_are_errors_naming_where_and_the_first_index(bad, fp8):
    x = torch.randn(2, 2, 5, 4)
    x[1, 0, 3, 2] = bad
    x[1, 1, 4, 0] = bad
    call = (
        (lambda: quantize_fp8(x, where="layer 3 keys"))
        if fp8
        else lambda: quantize(x, 4, where="layer 3 keys")
    )
    error = assert_clear_error(Case("nan", call, ValueError, ("NaN/inf", "(1, 0, 3, 2)", "2 ")))
    assert str(error).startswith("layer 3 keys: ")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_dtype_is_kept_and_the_input_is_not_modified(dtype, scheme):
    x = (torch.randn(2, 3, 16, 8) * 5).to(dtype)
    before = x.clone()
    for bits in BITS:
        for granularity in GRANULARITIES:
            q = quantize(x, bits, scheme, granularity, group_size=4)
            assert q.dtype == dtype and q.shape == (2, 3, 16, 8)
            assert q.scales.dtype == dtype and q.codes.dtype == torch.uint8
            assert dequantize(q).dtype == dtype
    assert torch.equal(x, before)
    fp8 = quantize_fp8(x)
    assert fp8.dequantize().dtype == dtype and torch.equal(x, before)


# --- granularity: shapes, and which elements share a scale ----------------------------------------


@pytest.mark.parametrize(
    ("granularity", "group_size", "scale_shape"),
    [
        ("per_token", None, (2, 4, 64, 1)),
        ("per_token", 8, (2, 4, 64, 4)),
        ("per_channel", None, (2, 4, 1, 32)),
        ("per_channel", 16, (2, 4, 4, 32)),
    ],
)
def test_scale_shapes_per_token_per_channel_and_per_group(granularity, group_size, scale_shape):
    x = torch.randn(2, 4, 64, 32)
    for bits in BITS:
        for scheme in SCHEMES:
            q = quantize(x, bits, scheme, granularity, group_size)
            assert q.codes.shape == (2, 4, 64, 32 * bits // 8)
            assert q.scales.shape == scale_shape
            assert (q.zero_points is not None) == (scheme == "asymmetric")
            assert (q.mins is not None) == (scheme == "kivi")
            for offsets in (q.zero_points, q.mins):
                assert offsets is None or offsets.shape == scale_shape


def test_groups_run_along_the_stated_axis():
    x = torch.randn(2, 16, 8)
    per_channel = quantize(x, 4, "symmetric", "per_channel", group_size=4)
    expected = x.reshape(2, 4, 4, 8).abs().amax(dim=2) / 7  # (B, T/G, G, D): G consecutive tokens
    torch.testing.assert_close(per_channel.scales, expected)
    per_token = quantize(x, 4, "kivi", "per_token", group_size=2)
    torch.testing.assert_close(per_token.mins, x.reshape(2, 16, 4, 2).amin(dim=-1))  # G channels


# --- bytes: measured from the tensors, equal to a formula ------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize(
    ("granularity", "group_size"), [("per_token", 32), ("per_token", 8), ("per_channel", 16)]
)
def test_nbytes_equals_the_formula(dtype, scheme, bits, granularity, group_size):
    """[2, 4, 64, 32]: codes numel * bits / 8 + one scale per group (+ a uint8 zero-point or a min)."""
    x = torch.randn(2, 4, 64, 32).to(dtype)
    numel, groups = x.numel(), x.numel() // group_size
    offset_bytes = {"symmetric": 0, "asymmetric": 1, "kivi": bytes_per_element(dtype)}[scheme]
    expected = numel * bytes_per_element(f"int{bits}") + groups * (bytes_per_element(dtype) + offset_bytes)
    q = quantize(x, bits, scheme, granularity, group_size)
    assert q.nbytes() == expected
    assert cache_nbytes(q) == expected  # no view of a larger buffer hides behind the count


def test_nbytes_of_the_briefs_example():
    q = quantize(torch.randn(2, 4, 64, 32), 4, "asymmetric", "per_token", group_size=32)
    assert q.nbytes() == 16384 // 2 + 512 * 4 + 512 * 1  # packed codes + fp32 scales + uint8 zero-points


# --- fp8 ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_fp8_is_per_tensor_with_a_relative_error(dtype):
    assert hasattr(torch, "float8_e4m3fn")
    x = (torch.randn(2, 4, 32, 16) * 3).to(dtype)
    q = quantize_fp8(x)
    assert q.codes.dtype == torch.float8_e4m3fn and q.scales.shape == () and q.scales.dtype == torch.float32
    assert q.nbytes() == x.numel() + 4
    x64, s = x.double(), q.scales.double()
    error = (x64 - q.dequantize().double()).abs()
    bound = 2**-4 * x64.abs() + 2**-10 * s + torch.finfo(dtype).eps * x64.abs()
    assert (error <= bound).all()
    assert torch.equal(quantize_fp8(torch.zeros(3, 2)).dequantize(), torch.zeros(3, 2))


def test_fp8_with_a_fixed_scale_saturates_and_matches_its_own_scale():
    x = torch.randn(3, 5, 8, generator=torch.Generator().manual_seed(6)) * 4
    own = quantize_fp8(x)
    fixed = quantize_fp8(x, scale=own.scales)  # vLLM-style static scale, here the one max|x| gives
    assert torch.equal(fixed.codes.float(), own.codes.float()) and torch.equal(fixed.scales, own.scales)
    half = quantize_fp8(x, scale=own.scales.item() / 2)  # half the range: the largest values saturate
    x_hat = half.dequantize()
    assert x_hat.abs().max().item() == pytest.approx(448 * own.scales.item() / 2)
    assert not torch.isnan(x_hat).any(), "a cast past e4m3fn's range would give NaN"
    inside = x.abs() < 200 * own.scales.item()
    assert torch.allclose(x_hat[inside], x[inside], rtol=2**-4, atol=0)


# --- bad arguments ----------------------------------------------------------------------------------------

X = torch.randn(2, 8, 4)

BAD = [
    Case("fp8 scale zero", lambda: quantize_fp8(X, scale=0.0), ValueError, ("scale", "positive", "0.0")),
    Case("fp8 scale nan", lambda: quantize_fp8(X, scale=float("nan")), ValueError, ("scale", "finite")),
    Case("fp8 scale str", lambda: quantize_fp8(X, scale="1"), TypeError, ("scale", "one-element tensor")),
    Case(
        "fp8 scale vector",
        lambda: quantize_fp8(X, scale=torch.ones(2)),
        ValueError,
        ("scale", "one floating-point number", "[2]"),
    ),
    Case("bits 3", lambda: quantize(X, bits=3), ValueError, ("bits", "2, 4 or 8", "3")),
    Case("bits float", lambda: quantize(X, bits=4.0), TypeError, ("bits", "4.0")),
    Case(
        "scheme unknown",
        lambda: quantize(X, scheme="zeropoint"),
        ValueError,
        ("scheme", "'kivi'", "zeropoint"),
    ),
    Case("scheme not str", lambda: quantize(X, scheme=None), TypeError, ("scheme", "None")),
    Case(
        "granularity",
        lambda: quantize(X, granularity="token"),
        ValueError,
        ("granularity", "per_token", "'token'"),
    ),
    Case(
        "group 3 of D=4", lambda: quantize(X, group_size=3), ValueError, ("group_size=3", "divide", "D", "4")
    ),
    Case(
        "group 3 of T=8",
        lambda: quantize(X, granularity="per_channel", group_size=3, where="layer 0 keys"),
        ValueError,
        ("layer 0 keys", "group_size=3", "tokens (T) = 8"),
    ),
    Case("group 0", lambda: quantize(X, group_size=0), ValueError, ("group_size", ">= 1", "0")),
    Case("group float", lambda: quantize(X, group_size=2.0), TypeError, ("group_size", "2.0")),
    Case(
        "int input",
        lambda: quantize(torch.ones(2, 4, dtype=torch.int64)),
        TypeError,
        ("x", "float32", "int64"),
    ),
    Case("fp8 input", lambda: quantize(X.to(torch.float8_e4m3fn)), TypeError, ("x", "float8_e4m3fn")),
    Case("not a tensor", lambda: quantize([[1.0, 2.0]]), TypeError, ("x", "torch.Tensor", "list")),
    Case("1-d input", lambda: quantize(torch.randn(8)), ValueError, ("x", "[..., T, D]", "[8]")),
    Case("no tokens", lambda: quantize(torch.randn(2, 0, 4), granularity="per_channel"), ValueError, ("T",)),
    Case("fp8 int input", lambda: quantize_fp8(torch.ones(2, dtype=torch.int32)), TypeError, ("x", "int32")),
    Case("dequantize tensor", lambda: dequantize(X), TypeError, ("QuantizedTensor", "Tensor")),
    Case(
        "pack int64", lambda: pack_codes(torch.zeros(4, dtype=torch.int64), 4), TypeError, ("uint8", "int64")
    ),
    Case("pack 16 in int4", lambda: pack_codes(u8(1, 16), 4), ValueError, ("[0, 15]", "16", "(1,)")),
    Case("pack bits 1", lambda: pack_codes(u8(1, 0), 1), ValueError, ("bits", "2, 4 or 8")),
    Case(
        "pack scalar",
        lambda: pack_codes(torch.tensor(3, dtype=torch.uint8), 4),
        ValueError,
        ("one dimension",),
    ),
    Case("unpack length", lambda: unpack_codes(u8(1, 2), 4, 5), ValueError, ("length=5", "[..., 3]", "[2]")),
]


@pytest.mark.parametrize("case", params(BAD))
def test_bad_arguments_are_clear_errors(case):
    assert_clear_error(case)


def test_an_empty_token_axis_is_fine_per_token():
    q = quantize(torch.randn(2, 0, 4), 4)
    assert q.dequantize().shape == (2, 0, 4) and q.nbytes() == 0


# --- real keys and values of the shipped model ------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped_kv():
    """Keys and values [1, num_kv_heads, 64, head_dim] of every layer, 64 validation tokens."""
    from kvlib.cache.dense import NaiveKVCache
    from kvlib.data import token_ids
    from kvlib.model import load_model

    model = load_model("shakespeare-gqa")
    cache = NaiveKVCache(model.config.num_layers)
    with torch.no_grad():
        model(token_ids("val")[:64][None], cache=cache)
    return cache.keys, cache.values


def mean_relative_error(tensors: list[torch.Tensor], bits: int, granularity: str) -> float:
    errors = [(t - quantize(t, bits, "kivi", granularity).dequantize()).norm() / t.norm() for t in tensors]
    return float(sum(errors) / len(errors))


@pytest.mark.model
@pytest.mark.parametrize("bits", [2, 4])
def test_keys_prefer_per_channel_values_prefer_per_token(shipped_kv, bits):
    """KIVI's observation, measured on the 5M model (asymmetric with mins, whole-axis groups): key
    channels differ in range, so one scale per channel fits keys better; values the other way round."""
    keys, values = shipped_kv
    assert mean_relative_error(keys, bits, "per_channel") < mean_relative_error(keys, bits, "per_token")
    assert mean_relative_error(values, bits, "per_token") < mean_relative_error(values, bits, "per_channel")


# --- found by review: values near a dtype's maximum, float64, small fp16 groups --------------------


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(
    ("dtype", "row"),
    [
        (torch.float16, [65504.0, 100.0, -3.0, 7.0]),  # a rounded-up scale puts qmax * s past 65504
        (torch.float16, [65504.0, 65504.0, 65504.0, 65504.0]),
        (torch.float16, [65504.0, -65504.0, 1.0, 0.5]),
        (torch.bfloat16, [3.39e38, 1.0, 2.0, 0.5]),
        (torch.float32, [3.4e38, -3.4e38, 1.0, 0.0]),  # symmetric only: hi - lo overflows float32
    ],
)
def test_values_near_the_dtype_maximum_stay_finite_and_within_the_bound(scheme, dtype, row):
    x = torch.tensor([row], dtype=dtype)
    if scheme != "symmetric" and dtype != torch.float16 and min(row) < 0:  # fp16 has float32 headroom
        with pytest.raises(ValueError, match="layer 0 keys: a group of x spans more than"):
            quantize(x, 4, scheme, where="layer 0 keys")
        return
    for bits in BITS:
        q = quantize(x, bits, scheme)
        x_hat = q.dequantize()
        assert torch.isfinite(q.scales).all() and torch.isfinite(x_hat).all(), (scheme, bits, x_hat)
        assert ((x.double() - x_hat.double()).abs() <= q.scales.double() / 2 * (1 + 1e-6)).all()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_float64_is_quantized_and_restored_in_float64(scheme):
    x = torch.tensor([[1.0, 1 + 1e-12, 1 + 2e-12, 1 + 3e-12]], dtype=torch.float64)
    q = quantize(x, 8, scheme)
    assert (x - q.dequantize()).abs().max() <= q.scales.max() / 2 * (1 + 1e-9)
    with pytest.raises(ValueError, match="does not fit the float32"):
        quantize_fp8(torch.tensor([[1e300, -1e300]], dtype=torch.float64))


def test_a_small_fp16_group_keeps_the_step_it_needs():
    """max|x| = 1e-3 at 8 bits needs s = 7.9e-6, below fp16's smallest normal (6.1e-5)."""
    x = ((torch.rand(1, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1) * 1e-3).half()
    q = quantize(x, 8)
    assert q.scales.item() < 1e-5
    half = quantize(x.float(), 8)
    assert (x.float() - q.dequantize().float()).abs().max() <= 2 * (x.float() - half.dequantize()).abs().max()


def test_shape_errors_carry_where_and_unpack_reports_a_wrong_dtype_as_type_error():
    with pytest.raises(ValueError, match=r"^layer 1 keys: x must be \[\.\.\., T, D\]"):
        quantize(torch.randn(8), where="layer 1 keys")
    with pytest.raises(TypeError, match="packed must be a torch.uint8 tensor"):
        unpack_codes(torch.zeros(2, dtype=torch.int64), 4, 4)


def test_fp8_keeps_no_autograd_history():
    x = torch.randn(4, 8, requires_grad=True)
    assert not quantize_fp8(x).dequantize().requires_grad
    assert not quantize(x).dequantize().requires_grad


# --- chapter 04's exercises in the notebook's shapes -------------------------------------------------------
# Each is checked against its formula written out here, independently of quantize(), so that the grader's
# reference cannot drift from the notebook's docstrings.


def _symmetric_formula(x: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    qmax = 2 ** (bits - 1) - 1
    absmax = x.float().abs().amax(dim=-1, keepdim=True)
    scale = torch.where(absmax > 0, absmax / qmax, torch.ones_like(absmax))
    return torch.round(x.float() / scale).clamp(-qmax, qmax).to(torch.int8), scale


@pytest.mark.parametrize("dtype", DTYPES)
def test_quantize_int8_is_the_symmetric_formula_with_a_guarded_zero_token(dtype):
    from kvlib.quant import quantize_int8

    x = (torch.randn(2, 3, 7, 32, generator=torch.Generator().manual_seed(4)) * 5).to(dtype)
    x[1, 2, 3] = 0  # a token of zeros: scale 1.0, codes 0
    before = x.clone()
    codes, scale = quantize_int8(x)
    want_codes, want_scale = _symmetric_formula(x, 8)
    assert codes.dtype == torch.int8 and scale.dtype == torch.float32 and scale.shape == (2, 3, 7, 1)
    assert torch.equal(codes, want_codes) and torch.equal(scale, want_scale)
    assert scale[1, 2, 3].item() == 1.0 and not codes[1, 2, 3].any()
    assert ((x.float() - codes.float() * scale).abs() <= scale / 2 * (1 + 1e-6)).all()
    assert torch.equal(x, before)


@pytest.mark.parametrize("bits", BITS)
def test_quantize_groups_is_the_zero_point_formula(bits):
    from kvlib.quant import quantize_groups

    x = torch.randn(2, 5, 24, generator=torch.Generator().manual_seed(bits)) + 0.7  # mostly positive groups
    x[0, 1, :8] = 0  # a group of zeros
    codes, scale, zero_point = quantize_groups(x, 8, bits)
    levels = 2**bits - 1
    groups = x.reshape(2, 5, 3, 8)
    lo, hi = groups.amin(-1).clamp(max=0), groups.amax(-1).clamp(min=0)
    want_scale = torch.where(hi > lo, (hi - lo) / levels, torch.ones_like(hi))
    want_zero = torch.round(-lo / want_scale).clamp(0, levels)
    want_codes = (torch.round(groups / want_scale[..., None]) + want_zero[..., None]).clamp(0, levels)
    assert (codes.dtype, scale.dtype, zero_point.dtype) == (torch.uint8, torch.float32, torch.uint8)
    assert torch.equal(scale, want_scale) and torch.equal(zero_point, want_zero.to(torch.uint8))
    assert torch.equal(codes, want_codes.reshape(x.shape).to(torch.uint8))
    assert scale[0, 1, 0].item() == 1.0


def test_pack_int4_puts_the_even_element_in_the_low_nibble_and_refuses_odd_lengths():
    from kvlib.quant import pack_int4, unpack_int4

    assert pack_int4(u8(3, 10, 15, 0)).tolist() == [0xA3, 0x0F]
    assert unpack_int4(u8(0xA3, 0x0F)).tolist() == [3, 10, 15, 0]
    codes = torch.randint(0, 16, (2, 3, 6), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(unpack_int4(pack_int4(codes)), codes)
    with pytest.raises(ValueError, match="even"):
        pack_int4(u8(1, 2, 3))
    with pytest.raises(ValueError, match=r"\[0, 15\]"):
        pack_int4(u8(1, 16))


def test_layout_errors_follow_the_outliers():
    from kvlib.quant import layout_errors

    g = torch.Generator().manual_seed(2)
    # Like the outlier key channels KIVI saw: one channel (or one token) sits far from the others.
    offset = torch.where(torch.arange(16) == 3, 40.0, 0.0)
    outlier_channels = torch.randn(2, 2, 32, 16, generator=g) + offset  # (B, KV, T=32, D=16)
    outlier_tokens = torch.randn(2, 2, 16, 32, generator=g) + offset[:, None]  # (B, KV, T=16, D=32)
    channels, tokens = layout_errors(outlier_channels, 4, 8), layout_errors(outlier_tokens, 4, 8)
    assert channels["per_channel"] < channels["per_token"] / 2
    assert tokens["per_token"] < tokens["per_channel"] / 2
    assert all(isinstance(v, float) for v in channels.values())
    with pytest.raises(ValueError, match="all zero"):
        layout_errors(torch.zeros(1, 1, 8, 8), 4, 8)


@pytest.mark.parametrize("bits", (4, 8))
def test_quantize_kv_returns_four_values_at_both_widths(bits):
    from kvlib.quant import quantize_kv

    k = torch.randn(2, 2, 5, 16, generator=torch.Generator().manual_seed(3)).half()
    v = torch.randn(2, 2, 5, 8, generator=torch.Generator().manual_seed(4))
    k_codes, k_scale, v_codes, v_scale = quantize_kv(k, v, bits)
    for (codes, scale), x in (((k_codes, k_scale), k), ((v_codes, v_scale), v)):
        want_codes, want_scale = _symmetric_formula(x, bits)
        assert torch.equal(codes, want_codes) and torch.equal(scale, want_scale)
    with pytest.raises(ValueError, match="8 or 4"):
        quantize_kv(k, v, 2)


def test_compare_rows_is_relative_to_the_first_row_and_names_a_missing_one():
    from kvlib.quant import compare_rows

    table = {
        "int8": {"bytes_per_token": 400.0, "perplexity": 10.0, "ms_per_token": 2.0},
        "int4": {"bytes_per_token": 100.0, "perplexity": 10.5, "ms_per_token": 1.0, "bits": 4},
    }
    got = compare_rows(table, "int8", "int4")
    assert got == pytest.approx({"memory_saving": 0.75, "latency_overhead": -0.5, "quality_loss": 0.05})
    with pytest.raises(KeyError, match="int2"):
        compare_rows(table, "int8", "int2")
