"""kvlib.cache.quantized: the KIVI-style cache (per-channel or per-token keys) and the float-storage cache
against the naive cache, kvlib.quant, their byte formulas and transformers' generate."""

from __future__ import annotations

import pytest
import torch
from bad_input import Case, assert_clear_error, params

from kvlib import data
from kvlib.cache.dense import NaiveKVCache
from kvlib.cache.quantized import FloatKVCache, QuantizedKVCache
from kvlib.generate import generate
from kvlib.memory import cache_nbytes, float_kv_cache_bytes, quantized_kv_cache_bytes
from kvlib.model import checkpoint_path, load_model
from kvlib.quant import FP8_MAX, quantize, quantize_fp8, value_group_size

pytestmark = [pytest.mark.ch04, pytest.mark.usefixtures("one_torch_thread")]

PROMPT_LEN, NEW_TOKENS = 40, 32
# Measured on shakespeare-gqa, this prompt, bits=8, G=8, R=8, S=0: max |logit - naive| = 0.0073 over
# 32 greedy steps (logits reach 15). The tolerance leaves ~7x headroom for other BLAS builds.
BITS8_LOGIT_TOL = 0.05


@pytest.fixture(scope="module")
def model():
    return load_model("shakespeare-gqa")


@pytest.fixture(scope="module")
def prompt() -> torch.Tensor:
    return data.token_ids("val")[:PROMPT_LEN].unsqueeze(0)  # [1, 40]


@pytest.fixture(scope="module")
def naive_run(model, prompt):
    return generate(model, prompt, NEW_TOKENS, NaiveKVCache(model.config.num_layers), return_logits=True)


def keys_with_outlier_channels(batch=2, heads=3, tokens=20, head_dim=16, seed=0, dtype=torch.float32):
    """Random keys [B, KV, T, D] whose channels 0 and 5 are 20x larger (KIVI's observation)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, heads, tokens, head_dim, generator=g)
    x[..., [0, 5]] *= 20
    return x.to(dtype)


def feed(cache, k, v, chunks, layer=0):
    """Store k, v [B, KV, T, D] in ``cache`` in chunks of the given sizes; return the last update."""
    start, out = 0, None
    for size in chunks:
        out = cache.update(layer, k[:, :, start : start + size], v[:, :, start : start + size])
        start += size
    assert start == k.shape[2]
    return out


# --- against the naive cache on the shipped model ----------------------------------------------------


def test_int8_logits_close_to_naive_and_same_tokens(model, prompt, naive_run):
    ref_ids, ref_logits = naive_run
    cache = QuantizedKVCache(model.config.num_layers, bits=8, group_size=8, residual=8)
    ids, logits = generate(model, prompt, NEW_TOKENS, cache, return_logits=True)
    assert cache.num_quantized_tokens(0) == 56  # 71 tokens stored: (71 - 8) // 8 groups really quantized
    assert torch.equal(ids, ref_ids), "int8 KIVI changed a greedy token: is a group dequantized wrongly?"
    diff = (logits - ref_logits).abs().max().item()
    assert diff <= BITS8_LOGIT_TOL, f"int8 logits differ from the naive cache's by {diff:.4f}"


def test_window_covering_everything_is_the_naive_cache(model, prompt, naive_run):
    ref_ids, ref_logits = naive_run
    cache = QuantizedKVCache(model.config.num_layers, bits=2, group_size=8, residual=PROMPT_LEN + NEW_TOKENS)
    ids, logits = generate(model, prompt, NEW_TOKENS, cache, return_logits=True)
    assert cache.num_quantized_tokens(0) == 0
    assert torch.equal(ids, ref_ids) and torch.equal(logits, ref_logits), "nothing quantized: must be exact"


# --- the stored values -------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_returned_groups_are_kvlib_quant_within_half_a_scale(bits, dtype):
    G, R, S = 4, 3, 2
    k = keys_with_outlier_channels(tokens=21, dtype=dtype)  # [2, 3, 21, 16]: GQA-like 3 heads, batch 2
    v = keys_with_outlier_channels(tokens=21, seed=1, dtype=dtype)
    cache = QuantizedKVCache(1, bits=bits, group_size=G, residual=R, sinks=S)
    k_all, v_all = feed(cache, k, v, [5, 1, 1, 7, 1, 6])
    groups = (21 - S - R) // G  # 4
    assert cache.num_quantized_tokens(0) == groups * G and k_all.dtype == dtype
    assert k_all.shape == v_all.shape == k.shape
    for i in range(groups):
        span = slice(S + i * G, S + (i + 1) * G)
        qk = quantize(k[:, :, span], bits, "kivi", "per_channel", G)
        qv = quantize(v[:, :, span], bits, "kivi", "per_token", value_group_size(G, 16))
        assert torch.equal(k_all[:, :, span], qk.dequantize()), f"key group {i} is not kvlib.quant's"
        assert torch.equal(v_all[:, :, span], qv.dequantize()), f"value group {i} is not kvlib.quant's"
        k_scale = qk.scales.double().repeat_interleave(G, -2)  # (B, KV, G, D): one scale per channel
        v_scale = qv.scales.double().repeat_interleave(qv.group_size, -1)  # one per token's channel group
        for name, x, x_hat, s in (("key", k, k_all, k_scale), ("value", v, v_all, v_scale)):
            x64 = x[:, :, span].double()
            rounding = torch.finfo(dtype).eps * (x64.abs() + s) + 8 * torch.finfo(torch.float32).eps * (
                x64.abs() + s * 2**bits
            )  # x_hat rounded to the dtype, and float32's own rounding (as tests/test_quant.py)
            worst = ((x64 - x_hat[:, :, span].double()).abs() - s / 2 - rounding).max()
            assert worst <= 0, f"{name} group {i} exceeds scale/2 by {worst.item():.3g}"
    assert torch.equal(k_all[:, :, :S], k[:, :, :S]) and torch.equal(v_all[:, :, :S], v[:, :, :S])
    tail = slice(S + groups * G, None)
    assert torch.equal(k_all[:, :, tail], k[:, :, tail]) and torch.equal(v_all[:, :, tail], v[:, :, tail])


@pytest.mark.parametrize("residual", [0, 3])
@pytest.mark.parametrize(("bits", "scheme"), [(8, "symmetric"), (4, "asymmetric"), (2, "kivi")])
def test_per_token_keys_are_kvlib_quant_per_token(bits, scheme, residual):
    """Keys quantized like values: per token, in groups of value_group_size(G, D) channels."""
    G, S = 4, 2
    k = keys_with_outlier_channels(tokens=19)  # [2, 3, 19, 16]
    v = keys_with_outlier_channels(tokens=19, seed=1)
    cache = QuantizedKVCache(1, bits, G, residual, S, scheme=scheme, key_granularity="per_token")
    k_all, v_all = feed(cache, k, v, [5, 1, 1, 7, 1, 4])
    q = 19 - S - residual  # every token past the sinks and the window: no waiting for G tokens
    assert cache.num_quantized_tokens(0) == q and cache.num_residual_tokens(0) == residual
    span = slice(S, S + q)
    qk = quantize(k[:, :, span], bits, scheme, "per_token", value_group_size(G, 16))
    qv = quantize(v[:, :, span], bits, scheme, "per_token", value_group_size(G, 16))
    assert torch.equal(k_all[:, :, span], qk.dequantize()), "per-token keys are not kvlib.quant's per_token"
    assert torch.equal(v_all[:, :, span], qv.dequantize())
    assert torch.equal(k_all[:, :, :S], k[:, :, :S]) and torch.equal(k_all[:, :, S + q :], k[:, :, S + q :])
    assert cache._layers[0].quant_k.scales.shape == (2, 3, q, 16 // G)


def test_per_token_keys_leave_the_window_one_token_at_a_time():
    R, S = 5, 2
    cache = QuantizedKVCache(1, bits=4, group_size=8, residual=R, sinks=S, key_granularity="per_token")
    k = keys_with_outlier_channels(tokens=30)
    for n in range(1, 31):
        cache.update(0, k[:, :, n - 1 : n], k[:, :, n - 1 : n])
        assert cache.num_residual_tokens(0) == min(n - min(S, n), R), f"after {n} tokens"
        assert cache.num_quantized_tokens(0) == max(0, n - S - R)
    one_call = QuantizedKVCache(1, bits=4, group_size=8, residual=R, sinks=S, key_granularity="per_token")
    a, b = feed(one_call, k, k, [30]), cache.update(0, k[:, :, :0], k[:, :, :0])
    assert torch.equal(a[0], b[0]) and one_call.nbytes() == cache.nbytes(), "the state depends on the split"


def test_value_groups_fall_back_to_the_whole_head_dim():
    assert value_group_size(8, 32) == 8 and value_group_size(12, 32) == 32
    cache = QuantizedKVCache(1, bits=4, group_size=12, residual=0)
    k = keys_with_outlier_channels(tokens=12, head_dim=32)
    cache.update(0, k, k.clone())
    state = cache._layers[0]
    assert state.quant_v.group_size == 32 and state.quant_v.scales.shape == (2, 3, 12, 1)
    assert state.quant_k.group_size == 12 and state.quant_k.scales.shape == (2, 3, 1, 32)


def test_a_group_is_quantized_once_the_window_holds_residual_plus_g():
    G, R, S = 4, 5, 2
    cache = QuantizedKVCache(2, bits=4, group_size=G, residual=R, sinks=S)
    k = keys_with_outlier_channels(tokens=40)
    for n in range(1, 41):
        cache.update(0, k[:, :, n - 1 : n], k[:, :, n - 1 : n])
        expected = max(0, (n - min(S, n) - R) // G) * G
        assert cache.num_quantized_tokens(0) == expected, f"after {n} tokens"
        assert cache.num_sink_tokens(0) == min(S, n)
        window = cache.num_residual_tokens(0)
        assert min(n - min(S, n), R) <= window <= R + G - 1
        if n == S + R + G - 1:
            assert cache.num_quantized_tokens(0) == 0, "quantized before the window held R + G tokens"
        if n == S + R + G:
            assert cache.num_quantized_tokens(0) == G, "exactly one group after R + G tokens past the sinks"
    assert cache.num_quantized_tokens(1) == 0 and cache.seq_len == 40


def test_state_does_not_depend_on_how_tokens_were_split():
    k, v = keys_with_outlier_channels(tokens=33), keys_with_outlier_channels(tokens=33, seed=3)
    one_call, many = QuantizedKVCache(1, 2, 4, 6, 3), QuantizedKVCache(1, 2, 4, 6, 3)
    a = feed(one_call, k, v, [33])
    b = feed(many, k, v, [1, 2, 1, 10, 3, 1, 15])
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert one_call.nbytes() == many.nbytes()


def test_sinks_stay_exact_at_two_bits():
    cache = QuantizedKVCache(1, bits=2, group_size=4, residual=0, sinks=4)
    k = keys_with_outlier_channels(tokens=30)
    k_all, v_all = feed(cache, k, -k, [3, 1, 1, 25])
    assert torch.equal(k_all[:, :, :4], k[:, :, :4]) and torch.equal(v_all[:, :, :4], -k[:, :, :4])
    assert not torch.equal(k_all[:, :, 4:], k[:, :, 4:])  # the rest really is 2-bit
    assert cache.num_quantized_tokens(0) == 24


def test_reset_forgets_everything():
    cache = QuantizedKVCache(2, bits=4, group_size=4, residual=2)
    k = keys_with_outlier_channels(tokens=10)
    cache.update(0, k, k)
    cache.reset()
    assert cache.seq_len == 0 and cache.nbytes() == 0 and cache.num_quantized_tokens(0) == 0
    k2 = keys_with_outlier_channels(batch=1, heads=1, tokens=3, head_dim=8, dtype=torch.float16)
    assert cache.update(0, k2, k2)[0].shape == (1, 1, 3, 8)  # a new shape is fine after reset


# --- bytes ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("scheme", ["kivi", "asymmetric", "symmetric"])
@pytest.mark.parametrize(
    ("head_dim", "group_size", "dtype"), [(16, 4, torch.float16), (24, 16, torch.float32)]
)
@pytest.mark.parametrize("keys", ["per_channel", "per_token"])
def test_bytes_match_the_formula(bits, scheme, head_dim, group_size, dtype, keys):
    layers, B, KV, R, S = 2, 2, 3, 5, 3
    cache = QuantizedKVCache(layers, bits, group_size, R, S, scheme=scheme, key_granularity=keys)

    def formula(n: int) -> int:
        return quantized_kv_cache_bytes(
            layers, KV, head_dim, n, B, bits, group_size, R, S, dtype, scheme, key_granularity=keys
        )

    assert cache.nbytes() == formula(0) == 0
    n = 0
    for step in (1, 2, 4, 1, 9, 1, 30):  # n = 1 and 3 (sinks filling), 7 (window), 8, 17, 18, 48
        k = keys_with_outlier_channels(B, KV, step, head_dim, seed=n, dtype=dtype)
        for layer in range(layers):
            cache.update(layer, k, k)
        n += step
        assert cache.nbytes() == formula(n) == cache_nbytes(cache), f"{n} tokens"
    assert cache.num_quantized_tokens(0) > 0


def test_bytes_formula_by_hand():
    # one layer, one head, D=32, G=32, R=0, 64 tokens at 4 bits, fp16: 2 key groups, 2 value groups
    # keys: 64 * 16 code bytes + 2 * 32 scales * (2 + 2 bytes); values: 64 * 16 + 64 * 1 * (2 + 2)
    assert quantized_kv_cache_bytes(1, 1, 32, 64, 1, 4, 32, 0, 0, torch.float16) == 1024 + 256 + 1024 + 256
    # nothing quantized yet: the plain fp16 size
    assert quantized_kv_cache_bytes(6, 2, 32, 100, 1, 4, 32, 128, 4, "fp16") == 2 * 6 * 2 * 32 * 100 * 2


# --- FloatKVCache ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("storage", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_bf16_and_fp16_storage_is_a_cast_returned_in_the_input_dtype(storage, dtype):
    k, v = keys_with_outlier_channels(tokens=11, dtype=dtype), keys_with_outlier_channels(tokens=11, seed=2)
    cache = FloatKVCache(1, storage)
    k_all, v_all = feed(cache, k, v.to(dtype), [4, 1, 6])
    assert k_all.dtype == dtype and cache._layers[0].keys.dtype == storage
    assert torch.equal(k_all, k.to(storage).to(dtype)) and torch.equal(
        v_all, v.to(dtype).to(storage).to(dtype)
    )


def test_fp8_scale_is_set_by_the_first_update_and_later_values_saturate():
    k = keys_with_outlier_channels(tokens=6)
    cache = FloatKVCache(2, torch.float8_e4m3fn)
    first_k, first_v = cache.update(0, k[:, :, :4], 2 * k[:, :, :4])
    ref = quantize_fp8(k[:, :, :4])
    assert torch.equal(first_k, ref.dequantize()), "the first update is kvlib.quant.quantize_fp8's"
    k_scale, v_scale = cache.scales(0)
    assert k_scale == ref.scales.item() == (k[:, :, :4].abs().amax() / FP8_MAX).item()  # float32 max|x| / 448
    assert v_scale == 2 * k_scale and cache.scales(1) is None
    big = 10 * k[:, :, 4:]  # beyond the first update's maximum: saturates at +-448 * k_scale
    k_all, _ = cache.update(0, big, big)
    limit = FP8_MAX * k_scale
    assert k_all[:, :, 4:].abs().max().item() == pytest.approx(limit, rel=1e-6)
    inside = big.abs() < limit / 2
    rel = ((k_all[:, :, 4:] - big).abs() / big.abs())[inside]
    assert rel.max() <= 2**-4, "e4m3 keeps 3 mantissa bits: relative error <= 2^-4 in the normal range"
    assert cache.scales(0) == (k_scale, v_scale), "the scale must stay fixed after the first update"
    assert torch.equal(k_all[:, :, :4], first_k)


@pytest.mark.parametrize("storage", [torch.bfloat16, torch.float16, torch.float8_e4m3fn])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_float_cache_bytes_match_the_formula(storage, dtype):
    layers, B, KV, D = 3, 2, 2, 8
    cache = FloatKVCache(layers, storage)
    assert cache.nbytes() == float_kv_cache_bytes(layers, KV, D, 0, B, storage) == 0
    n = 0
    for step in (1, 2, 7, 1, 30):
        k = keys_with_outlier_channels(B, KV, step, D, seed=n, dtype=dtype)
        for layer in range(layers):
            cache.update(layer, k, k)
        n += step
        expected = float_kv_cache_bytes(layers, KV, D, n, B, storage)
        assert cache.nbytes() == expected == cache_nbytes(cache), f"{n} tokens"
    cache.reset()
    assert cache.nbytes() == 0 and cache.seq_len == 0 and cache.scales(0) is None


def test_float_caches_in_the_model_stay_close_to_naive(model, prompt, naive_run):
    ref_ids, ref_logits = naive_run
    for storage, tol in ((torch.bfloat16, 0.2), (torch.float8_e4m3fn, 1.0)):
        cache = FloatKVCache(model.config.num_layers, storage)
        ids, logits = generate(model, prompt, NEW_TOKENS, cache, return_logits=True)
        assert cache.seq_len == PROMPT_LEN + NEW_TOKENS - 1
        diff = (logits[:, :4] - ref_logits[:, :4]).abs().max().item()  # before greedy paths may split
        assert 0 < diff <= tol, f"{storage}: first logits differ from the naive cache's by {diff:.4f}"


# --- bad input -----------------------------------------------------------------------------------------


def _filled(**kwargs) -> QuantizedKVCache:
    cache = QuantizedKVCache(2, bits=4, group_size=4, residual=2, **kwargs)
    k = keys_with_outlier_channels(tokens=9)
    cache.update(1, k, k)
    return cache


def _with(value: float, at: tuple[int, int, int, int]) -> torch.Tensor:
    x = keys_with_outlier_channels(tokens=3)
    x[at] = value
    return x


_ok = keys_with_outlier_channels(tokens=3)

BAD_INPUT = [
    Case("zero-layers", lambda: QuantizedKVCache(0), ValueError, ("num_layers",)),
    Case("bits-3", lambda: QuantizedKVCache(2, bits=3), ValueError, ("bits", "3")),
    Case("group-0", lambda: QuantizedKVCache(2, group_size=0), ValueError, ("group_size",)),
    Case("residual-negative", lambda: QuantizedKVCache(2, residual=-1), ValueError, ("residual",)),
    Case("sinks-float", lambda: QuantizedKVCache(2, sinks=1.0), TypeError, ("sinks",)),
    Case("scheme", lambda: QuantizedKVCache(2, scheme="nf4"), ValueError, ("scheme", "kivi")),
    Case("key-granularity", lambda: QuantizedKVCache(2, key_granularity="token"), ValueError, ("per_token",)),
    Case("layer-range", lambda: _filled().update(2, _ok, _ok), IndexError, ("layer", "[0, 2)")),
    Case("k-3d", lambda: _filled().update(0, _ok[0], _ok), ValueError, ("k", "4 dims")),
    Case("k-v-shapes", lambda: _filled().update(0, _ok, _ok[:, :2]), ValueError, ("same shape",)),
    Case("int-keys", lambda: _filled().update(0, _ok.long(), _ok.long()), ValueError, ("layer 0", "int64")),
    Case("heads-changed", lambda: _filled().update(1, _ok[:, :2], _ok[:, :2]), ValueError, ("num_kv_heads",)),
    Case("batch-changed", lambda: _filled().update(1, _ok[:1], _ok[:1]), ValueError, ("batch", "reset")),
    Case("dim-changed", lambda: _filled().update(1, _ok[..., :8], _ok[..., :8]), ValueError, ("head_dim",)),
    Case("dtype-changed", lambda: _filled().update(1, _ok.half(), _ok.half()), ValueError, ("float16",)),
    Case(
        "nan-key",
        lambda: _filled().update(1, _with(float("nan"), (1, 2, 1, 4)), _ok),
        ValueError,
        ("layer 1 keys", "position 10", "nan"),
    ),
    Case(
        "inf-value",
        lambda: _filled().update(0, _ok, _with(float("inf"), (0, 0, 2, 0))),
        ValueError,
        ("layer 0 values", "position 2", "inf"),
    ),
]


@pytest.mark.parametrize("case", params(BAD_INPUT))
def test_bad_input_is_a_clear_error(case):
    assert_clear_error(case)


def test_a_rejected_update_leaves_the_cache_as_it_was():
    cache = _filled(sinks=1)
    before = cache.update(1, _ok[:, :, :0], _ok[:, :, :0])
    nbytes = cache.nbytes()
    for bad_k in (_with(float("nan"), (0, 0, 0, 0)), _ok.half(), _ok[:1]):
        with pytest.raises(ValueError):
            cache.update(1, bad_k, bad_k)
    after = cache.update(1, _ok[:, :, :0], _ok[:, :, :0])
    assert torch.equal(before[0], after[0]) and cache.nbytes() == nbytes and cache.seq_len == 0


# --- transformers --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf_model():
    transformers = pytest.importorskip("transformers")
    path = checkpoint_path("shakespeare-gqa")
    return transformers.AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32, local_files_only=True
    ).eval()


# 72 tokens stored at the end: KIVI with G=8, R=8, S=2 has quantized 7 groups, per-token keys 62 tokens
HF_CACHES = {
    "kivi": lambda layers: QuantizedKVCache(layers, bits=4, group_size=8, residual=8, sinks=2),
    "per-token-keys": lambda layers: QuantizedKVCache(
        layers, bits=4, group_size=8, residual=8, sinks=2, scheme="asymmetric", key_granularity="per_token"
    ),
    "fp8": lambda layers: FloatKVCache(layers, torch.float8_e4m3fn),
    "bf16": lambda layers: FloatKVCache(layers, torch.bfloat16),
}


@pytest.mark.parametrize("name", HF_CACHES)
def test_transformers_generate_gives_kvlib_tokens(model, prompt, hf_model, name):
    from kvlib.hf import as_hf_cache

    layers = hf_model.config.num_hidden_layers
    hf_cache = HF_CACHES[name](layers)
    with torch.no_grad():
        hf_ids = hf_model.generate(
            prompt,
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,
            do_sample=False,
            pad_token_id=0,
            past_key_values=as_hf_cache(hf_cache, hf_model.config),
        )
    ids = generate(model, prompt, NEW_TOKENS, HF_CACHES[name](layers))
    assert hf_cache.seq_len == PROMPT_LEN + NEW_TOKENS - 1
    assert not isinstance(hf_cache, QuantizedKVCache) or hf_cache.num_quantized_tokens(0) > 0
    assert torch.equal(hf_ids, ids), f"the {name} cache gives other tokens inside transformers' generate"
