"""kvlib.cache.gqa: grouped attention, the KV-heads-only cache, MHA -> GQA conversion, bytes per token."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kvlib.attention import causal_attention, repeat_kv
from kvlib.cache.dense import NaiveKVCache
from kvlib.cache.gqa import (
    KVHeadsCache,
    config_kv_bytes_per_token,
    convert_mha_to_gqa,
    gqa_attention_step,
    grouped_attention,
    kv_bytes_per_token,
    kv_saving_factor,
    mean_pool_heads,
    repeated_attention,
)
from kvlib.memory import MODEL_CONFIGS
from kvlib.model import ModelConfig, TinyDecoder

pytestmark = pytest.mark.ch03


def _tiny(num_kv_heads: int = 4, seed: int = 0) -> TinyDecoder:
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=64, dim=32, num_layers=2, num_heads=4, num_kv_heads=num_kv_heads, ffn_dim=48,
                      max_seq_len=64)  # fmt: skip
    return TinyDecoder(cfg).eval()


@settings(max_examples=25, deadline=None)
@given(
    kv=st.sampled_from([1, 2, 3]),
    g=st.sampled_from([1, 2, 4]),
    tq=st.integers(1, 5),
    extra=st.integers(0, 4),
    seed=st.integers(0, 1000),
)
def test_grouped_attention_equals_repeated_attention(kv: int, g: int, tq: int, extra: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    b, d, tk = 2, 8, tq + extra
    q = torch.randn(b, kv * g, tq, d, generator=gen)
    k, v = torch.randn(b, kv, tk, d, generator=gen), torch.randn(b, kv, tk, d, generator=gen)
    expected = causal_attention(q, repeat_kv(k, g), repeat_kv(v, g))
    torch.testing.assert_close(grouped_attention(q, k, v), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(repeated_attention(q, k, v), expected)


def test_grouped_attention_mha_and_mqa_special_cases() -> None:
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(1, 4, 3, 8, generator=gen)
    k, v = torch.randn(1, 4, 3, 8, generator=gen), torch.randn(1, 4, 3, 8, generator=gen)
    torch.testing.assert_close(grouped_attention(q, k, v), causal_attention(q, k, v))  # MHA
    k1, v1 = k[:, :1], v[:, :1]
    mqa = causal_attention(q, k1.expand(1, 4, 3, 8), v1.expand(1, 4, 3, 8))  # every head shares head 0
    torch.testing.assert_close(grouped_attention(q, k1, v1), mqa)


def test_grouped_attention_query_head_uses_its_group() -> None:
    """Query head h reads KV head h // G: with one-hot values, the output says which head was read."""
    b, kv, g, t, d = 1, 3, 2, 1, 4
    q = torch.zeros(b, kv * g, t, d)
    k = torch.zeros(b, kv, t, d)
    v = torch.arange(kv, dtype=torch.float32).view(1, kv, 1, 1).expand(b, kv, t, d)  # head j holds value j
    out = grouped_attention(q, k, v)
    assert out[0, :, 0, 0].tolist() == [0.0, 0.0, 1.0, 1.0, 2.0, 2.0]


def test_grouped_attention_rejects_bad_shapes() -> None:
    q = torch.randn(1, 6, 2, 8)
    with pytest.raises(ValueError, match="multiple of num_kv_heads"):
        grouped_attention(q, torch.randn(1, 4, 2, 8), torch.randn(1, 4, 2, 8))
    with pytest.raises(ValueError, match="same shape"):
        grouped_attention(q, torch.randn(1, 2, 2, 8), torch.randn(1, 2, 3, 8))
    with pytest.raises(ValueError, match="need keys"):
        grouped_attention(q, torch.randn(1, 2, 2, 8), torch.randn(1, 2, 2, 8), q_start=1)


def _masked_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_start: int) -> torch.Tensor:
    """GQA attention built by hand in float64: query i of head h sits at position q_start + i and reads
    keys 0 .. q_start + i of KV head h // G."""
    b, h, tq, d = q.shape
    g = h // k.shape[1]
    out = torch.zeros(b, h, tq, d, dtype=torch.float64)
    for head in range(h):
        kk, vv = k[:, head // g].double(), v[:, head // g].double()  # (B, Tk, D)
        for i in range(tq):
            seen = q_start + i + 1
            scores = (kk[:, :seen] @ q[:, head, i].double().unsqueeze(-1)).squeeze(-1) / d**0.5  # (B, seen)
            out[:, head, i] = (torch.softmax(scores, -1).unsqueeze(-1) * vv[:, :seen]).sum(1)
    return out


@pytest.mark.parametrize("q_start", [0, 1, 2])
def test_grouped_attention_honours_an_explicit_q_start(q_start: int) -> None:
    """Queries placed before the end of the keys (q_start < Tk - Tq) must not see the later keys; guards
    against grouped_attention ignoring q_start and always using the default Tk - Tq."""
    gen = torch.Generator().manual_seed(7)
    b, kv, g, tq, tk, d = 2, 2, 3, 2, 6, 8
    q = torch.randn(b, kv * g, tq, d, generator=gen)
    k, v = torch.randn(b, kv, tk, d, generator=gen), torch.randn(b, kv, tk, d, generator=gen)
    expected = _masked_reference(q, k, v, q_start).float()
    out = grouped_attention(q, k, v, q_start=q_start)
    hint = f"q_start={q_start} not honoured (does the mask ignore it?)"
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5, msg=lambda m: f"{hint}: {m}")
    torch.testing.assert_close(repeated_attention(q, k, v, q_start=q_start), expected, atol=1e-5, rtol=1e-5)
    k2 = k.clone()
    k2[:, :, q_start + tq :] += 100.0  # keys after the last query's position: invisible
    torch.testing.assert_close(grouped_attention(q, k2, v, q_start=q_start), out)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("attend", [grouped_attention, repeated_attention], ids=["grouped", "repeated"])
def test_low_precision_output_is_the_rounded_fp32_result(attend, dtype) -> None:
    """Softmax weights and the value matmul stay in float32; only the output is rounded to fp16/bf16, so
    every element is within one unit of its precision (eps * |exact|) of the fp32 computation on the same
    inputs. Measured: at most 0.73 eps here; casting the weights to the input dtype before `@ v`
    (fp16/bf16 accumulation) gives 6.6 to 22 eps on the same inputs (Tk 6 to 256, 20 seeds)."""
    gen = torch.Generator().manual_seed(3)
    b, kv, g, tq, tk, d = 2, 2, 2, 4, 64, 16
    q = torch.randn(b, kv * g, tq, d, generator=gen).to(dtype)
    k = torch.randn(b, kv, tk, d, generator=gen).to(dtype)
    v = torch.randn(b, kv, tk, d, generator=gen).to(dtype)
    out = attend(q, k, v)
    assert out.dtype == dtype
    exact = attend(q.float(), k.float(), v.float())
    err = ((out.float() - exact).abs() / (exact.abs() * torch.finfo(dtype).eps)).max().item()
    assert err <= 1.0, f"{err:.1f} eps from the fp32 result: softmax weights cast to {dtype} before @ v?"


def test_step_by_step_equals_full_prefill_and_cache_holds_kv_heads_only() -> None:
    gen = torch.Generator().manual_seed(2)
    b, h, kv, t, d = 2, 6, 2, 7, 8
    q = torch.randn(b, h, t, d, generator=gen)
    k, v = torch.randn(b, kv, t, d, generator=gen), torch.randn(b, kv, t, d, generator=gen)
    full, _ = gqa_attention_step(q, k, v)
    past, outs = None, []
    for lo, hi in [(0, 3), (3, 4), (4, 7)]:  # prefill 3, decode 1, chunk of 3
        out, past = gqa_attention_step(q[:, :, lo:hi], k[:, :, lo:hi], v[:, :, lo:hi], past)
        assert past[0].shape == (b, kv, hi, d)
        outs.append(out)
    torch.testing.assert_close(torch.cat(outs, dim=2), full)
    torch.testing.assert_close(past[0], k)
    torch.testing.assert_close(past[1], v)


def test_kv_heads_cache_rejects_repeated_heads_and_counts_bytes() -> None:
    cache = KVHeadsCache(num_layers=2, num_kv_heads=2)
    k = torch.randn(1, 2, 3, 4)
    cache.update(0, k, k)
    cache.update(1, k, k)
    assert cache.seq_len == 3
    assert cache.nbytes() == 2 * 2 * (1 * 2 * 3 * 4) * 4  # layers * (K, V) * elements * fp32
    with pytest.raises(ValueError, match="before repeat_kv"):
        cache.update(0, repeat_kv(k, 2), repeat_kv(k, 2))
    cache.reset()
    assert cache.seq_len == 0 and cache.nbytes() == 0


def test_gqa_model_cache_is_smaller_by_the_group_factor() -> None:
    ids = torch.randint(0, 64, (1, 10))
    sizes = {}
    for kv in (4, 2, 1):
        model, cache = _tiny(kv), KVHeadsCache(2, kv)
        with torch.no_grad():
            model(ids, cache=cache)
        sizes[kv] = cache.nbytes()
    assert sizes[4] == 2 * sizes[2] == 4 * sizes[1]


def test_gqa_model_cached_decoding_matches_full_forward() -> None:
    model = _tiny(2)
    ids = torch.randint(0, 64, (2, 9))
    with torch.no_grad():
        full = model(ids)
        cache = KVHeadsCache(2, 2)
        steps = [model(ids[:, :5], cache=cache)] + [
            model(ids[:, i : i + 1], cache=cache) for i in range(5, 9)
        ]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-4)


def test_mean_pool_heads_pools_consecutive_heads() -> None:
    num_heads, d, c = 4, 2, 3
    w = (
        torch.arange(num_heads, dtype=torch.float32)
        .repeat_interleave(d)
        .unsqueeze(1)
        .expand(num_heads * d, c)
    )
    pooled = mean_pool_heads(w, num_heads, 2)  # groups {0, 1} and {2, 3}
    assert pooled.shape == (2 * d, c)
    assert pooled[:, 0].tolist() == [0.5, 0.5, 2.5, 2.5]
    torch.testing.assert_close(mean_pool_heads(w, num_heads, num_heads), w)
    torch.testing.assert_close(mean_pool_heads(w, num_heads, 1), w.reshape(num_heads, d, c).mean(0))
    with pytest.raises(ValueError, match="multiple of num_kv_heads"):
        mean_pool_heads(w, num_heads, 3)


def test_convert_identity_keeps_logits_and_leaves_input_untouched() -> None:
    model = _tiny(4)
    before = {k: t.clone() for k, t in model.state_dict().items()}
    ids = torch.randint(0, 64, (2, 8))
    same = convert_mha_to_gqa(model, 4)
    with torch.no_grad():
        torch.testing.assert_close(same(ids), model(ids))
    for name, t in model.state_dict().items():
        assert torch.equal(t, before[name]), name


@pytest.mark.parametrize("kv", [2, 1])
def test_convert_pools_keys_and_values_per_group(kv: int) -> None:
    model = _tiny(4)
    gqa = convert_mha_to_gqa(model, kv)
    assert gqa.config.num_kv_heads == kv and gqa is not model
    for old, new in zip(model.layers, gqa.layers):
        for proj in ("k_proj", "v_proj"):
            w = getattr(old.self_attn, proj).weight  # (H * D, C)
            expected = w.reshape(kv, 4 // kv, 8, 32).mean(1).reshape(kv * 8, 32)
            torch.testing.assert_close(getattr(new.self_attn, proj).weight, expected)
        torch.testing.assert_close(new.self_attn.q_proj.weight, old.self_attn.q_proj.weight)
        torch.testing.assert_close(new.self_attn.o_proj.weight, old.self_attn.o_proj.weight)
    ids = torch.randint(0, 64, (1, 6))
    with torch.no_grad():
        assert gqa(ids).shape == (1, 6, 64)


def test_convert_keys_are_the_mean_of_the_groups_keys() -> None:
    """Linearity: the pooled head's key (before RoPE) is the mean of its group's keys."""
    model = _tiny(4)
    gqa = convert_mha_to_gqa(model, 2)
    x = torch.randn(1, 5, 32)
    k_mha = model.layers[0].self_attn.k_proj(x).view(1, 5, 4, 8)
    k_gqa = gqa.layers[0].self_attn.k_proj(x).view(1, 5, 2, 8)
    torch.testing.assert_close(k_gqa, k_mha.view(1, 5, 2, 2, 8).mean(3), atol=1e-6, rtol=1e-5)


def test_convert_rejects_gqa_input_and_bad_groups() -> None:
    with pytest.raises(ValueError, match="expected an MHA model"):
        convert_mha_to_gqa(_tiny(2), 1)
    with pytest.raises(ValueError, match="multiple of num_kv_heads"):
        convert_mha_to_gqa(_tiny(4), 3)


def test_bytes_per_token_of_published_models() -> None:
    # Llama-2-7B: 2 * 32 layers * 32 heads * 128 * 2 bytes = 512 KiB; Llama-2-70B: 80 layers, 8 KV heads.
    assert config_kv_bytes_per_token(MODEL_CONFIGS["Llama-2-7B"]) == 512 * 1024
    assert config_kv_bytes_per_token(MODEL_CONFIGS["Llama-2-70B"]) == 320 * 1024
    assert config_kv_bytes_per_token(MODEL_CONFIGS["Llama-3-8B"]) == 128 * 1024
    assert config_kv_bytes_per_token(MODEL_CONFIGS["Mistral-7B"], torch.float32) == 256 * 1024
    assert kv_saving_factor(MODEL_CONFIGS["Llama-2-70B"]) == 8.0
    assert kv_saving_factor(MODEL_CONFIGS["Llama-2-7B"]) == 1.0
    for shape in MODEL_CONFIGS.values():
        assert config_kv_bytes_per_token(shape) == shape.kv_bytes_per_token()


def test_bytes_per_token_of_tiny_configs_and_errors() -> None:
    cfg = _tiny(4).config
    assert config_kv_bytes_per_token(cfg, torch.float32) == 2 * 2 * 4 * 8 * 4
    assert config_kv_bytes_per_token(dataclasses.replace(cfg, num_kv_heads=1), "fp16") == 2 * 2 * 1 * 8 * 2
    assert kv_bytes_per_token(1, 1, 2, "int4") == 2
    with pytest.raises(TypeError, match="ModelShape"):
        config_kv_bytes_per_token({"layers": 2})


def test_kv_heads_cache_is_a_naive_cache() -> None:
    assert isinstance(KVHeadsCache(1, 1), NaiveKVCache)


def test_convert_keeps_the_long_context_opt_in():
    from kvlib.model import ModelConfig, TinyDecoder

    model = TinyDecoder(
        ModelConfig(
            vocab_size=32, dim=16, num_layers=1, num_heads=4, num_kv_heads=4, ffn_dim=32, max_seq_len=8
        )
    )
    assert convert_mha_to_gqa(model, 2).allow_long_context is False
    model.allow_long_context = True
    long = convert_mha_to_gqa(model, 2)
    assert long.allow_long_context is True
    assert long(torch.zeros(1, 12, dtype=torch.long)).shape == (1, 12, 32)  # past max_seq_len=8, on purpose
