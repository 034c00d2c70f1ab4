"""TinyDecoder on small random configs: HF equivalence, caches, positions, checkpoints (no training)."""

from __future__ import annotations

import json
import os

import pytest
import torch

from kvlib.cache.base import KVCache
from kvlib.cache.dense import NaiveKVCache
from kvlib.model import ModelConfig, TinyDecoder, gpt2_shaped_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = pytest.mark.model

SMALL = dict(vocab_size=97, dim=32, num_layers=2, num_heads=4, ffn_dim=48, max_seq_len=64)


def _model(num_kv_heads=4, tie=True, seed=0) -> TinyDecoder:
    torch.manual_seed(seed)
    model = TinyDecoder(ModelConfig(**SMALL, num_kv_heads=num_kv_heads, tie_embeddings=tie)).eval()
    with torch.no_grad():  # non-trivial norm weights, so a wrong norm implementation shows
        for name, p in model.named_parameters():
            if name.endswith("layernorm.weight") or name == "norm.weight":
                p.uniform_(0.5, 1.5)
    return model


def _ids(B=2, T=20, seed=1):
    return torch.randint(0, SMALL["vocab_size"], (B, T), generator=torch.Generator().manual_seed(seed))


def test_config_validation_and_hf_round_trip():
    cfg = ModelConfig(**SMALL, num_kv_heads=2)
    assert cfg.head_dim == 8
    hf = cfg.to_hf_config()
    assert hf["rope_parameters"] == {"rope_type": "default", "rope_theta": 10000.0}
    assert ModelConfig.from_hf_config(hf) == cfg
    legacy = {k: v for k, v in hf.items() if k != "rope_parameters"} | {"rope_theta": 500.0}
    assert ModelConfig.from_hf_config(legacy).rope_theta == 500.0
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(**(SMALL | {"num_heads": 3}))
    with pytest.raises(ValueError, match="num_kv_heads"):
        ModelConfig(**SMALL, num_kv_heads=3)


@pytest.mark.parametrize("num_kv_heads, tie", [(4, True), (2, True), (1, False)])
def test_matches_transformers_llama(tmp_path, num_kv_heads, tie):
    from transformers import AutoModelForCausalLM

    model = _model(num_kv_heads, tie)
    model.save_pretrained(tmp_path, dtype=torch.float32)
    hf = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    assert type(hf).__name__ == "LlamaForCausalLM"
    ids = _ids()
    with torch.no_grad():
        ours, theirs = model(ids), hf(ids).logits
    assert ours.dtype == torch.float32 and ours.shape == (2, 20, SMALL["vocab_size"])
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_cached_prefill_plus_decode_equals_uncached():
    model = _model(num_kv_heads=2)
    ids = _ids(T=16)
    with torch.no_grad():
        full = model(ids)
        cache = NaiveKVCache(SMALL["num_layers"])
        steps = [model(ids[:, :10], cache=cache)]
        for t in range(10, 16):
            steps.append(model(ids[:, t : t + 1], cache=cache))  # default positions: cache.seq_len + arange
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.seq_len == 16
    assert isinstance(cache, KVCache)


def test_positions_are_explicit_and_matter():
    model = _model()
    ids = _ids(B=1, T=8)
    with torch.no_grad():
        # At init (std 0.02) attention is almost uniform, so positions barely move the logits; sharpen
        # q and k (scores of order 1, as in a trained model) so the test measures RoPE, not init noise.
        for layer in model.layers:
            layer.self_attn.q_proj.weight.mul_(15)
            layer.self_attn.k_proj.weight.mul_(15)
        base = model(ids)
        torch.testing.assert_close(model(ids, positions=torch.arange(8)), base)
        torch.testing.assert_close(model(ids, positions=torch.arange(8)[None]), base)  # [B, T] form
        shifted = model(ids, positions=torch.arange(8) + 5)
        # RoPE is relative: a uniform shift keeps attention scores, up to float error
        torch.testing.assert_close(shifted, base, atol=1e-3, rtol=1e-3)
        wrong = model(ids, positions=torch.tensor([0, 1, 2, 3, 4, 5, 6, 20]))
    assert (wrong[0, -1] - base[0, -1]).abs().max() > 1e-3  # last token at a wrong position
    torch.testing.assert_close(wrong[0, :-1], base[0, :-1])  # earlier tokens unaffected (causal)
    with pytest.raises(ValueError, match="positions"):
        model(ids, positions=torch.arange(7))
    with pytest.raises(ValueError, match="input_ids"):
        model(ids[0])


def test_checkpoint_round_trip_and_tied_lm_head(tmp_path):
    from safetensors.torch import load_file

    model = _model()
    model.save_pretrained(tmp_path)  # fp16 on disk
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["dtype"] == "float16"
    tensors = load_file(str(tmp_path / "model.safetensors"))
    assert "lm_head.weight" not in tensors and all(t.dtype == torch.float16 for t in tensors.values())
    loaded = TinyDecoder.from_pretrained(tmp_path)
    assert not loaded.training and loaded.lm_head.weight is loaded.embed_tokens.weight
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        torch.testing.assert_close(a.half().float(), b, msg=name)
    bf16 = TinyDecoder.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert bf16.embed_tokens.weight.dtype == torch.bfloat16


def test_naive_cache_grows_and_resets():
    cache = NaiveKVCache(2)
    assert cache.seq_len == 0 and cache.nbytes() == 0
    k = torch.randn(1, 2, 3, 4)
    for layer in (0, 1):
        k_all, v_all = cache.update(layer, k, 2 * k)
    k_all, v_all = cache.update(0, k[:, :, :1], k[:, :, :1])
    assert k_all.shape == (1, 2, 4, 4) and cache.seq_len == 4
    torch.testing.assert_close(k_all[:, :, :3], k)
    torch.testing.assert_close(v_all[:, :, :3], 2 * k)
    assert cache.nbytes() == (2 * 4 + 2 * 3) * 2 * 4 * 4  # layer 0 holds 4 tokens, layer 1 holds 3
    cache.reset()
    assert cache.seq_len == 0 and cache.nbytes() == 0
    with pytest.raises(IndexError):
        cache.update(2, k, k)
    with pytest.raises(ValueError):
        cache.update(0, k, k[:, :, :1])


def test_gpt2_shaped_model_is_random_and_offline():
    model = gpt2_shaped_model(n_layer=2, n_head=4, n_embd=64, n_positions=128, vocab_size=500)
    assert type(model).__name__ == "GPT2LMHeadModel" and not model.training
    assert model.config.n_layer == 2 and model.transformer.wpe.weight.shape == (128, 64)
    again = gpt2_shaped_model(n_layer=2, n_head=4, n_embd=64, n_positions=128, vocab_size=500)
    torch.testing.assert_close(model.transformer.wte.weight, again.transformer.wte.weight)  # seeded
    with torch.no_grad():
        assert model(torch.tensor([[1, 2, 3]])).logits.shape == (1, 3, 500)
