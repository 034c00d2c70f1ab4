"""kvlib.cache.static.StaticKVCache: same results as the growing cache, no reallocation, clear errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kvlib.cache.dense import NaiveKVCache
from kvlib.cache.static import StaticKVCache

pytestmark = pytest.mark.ch02


@settings(max_examples=30, deadline=None)
@given(steps=st.lists(st.integers(1, 4), min_size=1, max_size=6), layers=st.integers(1, 3))
def test_matches_naive_cache_and_never_reallocates(steps, layers):
    total = sum(steps)
    static, naive = StaticKVCache(layers, 2, 3, 4, total + 2), NaiveKVCache(layers)
    ptrs: dict[int, int] = {}
    for n in steps:
        for layer in range(layers):
            k, v = torch.randn(2, 3, n, 4), torch.randn(2, 3, n, 4)
            ks, vs = static.update(layer, k, v)
            kn, vn = naive.update(layer, k, v)
            assert torch.equal(ks, kn) and torch.equal(vs, vn)
            assert ptrs.setdefault(layer, ks.data_ptr()) == ks.data_ptr()  # a view of the same buffer
    assert static.seq_len == naive.seq_len == total


def test_full_cache_raises_a_clear_error():
    cache = StaticKVCache(1, 1, 1, 2, 4)
    cache.update(0, torch.ones(1, 1, 3, 2), torch.ones(1, 1, 3, 2))
    with pytest.raises(RuntimeError, match="max_seq_len=4"):
        cache.update(0, torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 2))


def test_reset_keeps_buffers_and_restarts():
    cache = StaticKVCache(2, 1, 1, 2, 8)
    ptr = cache.keys[0].data_ptr()
    for layer in range(2):
        cache.update(layer, torch.ones(1, 1, 5, 2), torch.ones(1, 1, 5, 2))
    cache.reset()
    assert cache.seq_len == 0
    k, _ = cache.update(1, torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))
    assert k.shape == (1, 1, 2, 2) and cache.keys[0].data_ptr() == ptr


def test_bad_shapes_and_arguments():
    cache = StaticKVCache(1, 2, 3, 4, 8)
    with pytest.raises(ValueError, match=r"\[2, 3, T_new, 4\]"):
        cache.update(0, torch.ones(2, 4, 1, 4), torch.ones(2, 4, 1, 4))
    with pytest.raises(IndexError):
        cache.update(1, torch.ones(2, 3, 1, 4), torch.ones(2, 3, 1, 4))
    with pytest.raises(ValueError, match="max_seq_len"):
        StaticKVCache(1, 1, 1, 1, 0)
    assert cache.nbytes() == 2 * 2 * 3 * 8 * 4 * 4
    assert "StaticKVCache" in repr(cache)


def test_works_inside_the_model():
    from kvlib.generate import generate
    from kvlib.model import ModelConfig, TinyDecoder

    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=50, dim=32, num_layers=2, num_heads=4, num_kv_heads=2, ffn_dim=64)
    model = TinyDecoder(cfg).eval()
    prompt = torch.randint(0, 50, (2, 5))
    a, la = generate(model, prompt, 6, NaiveKVCache(2), return_logits=True)
    b, lb = generate(model, prompt, 6, StaticKVCache(2, 2, 2, 8, 16), return_logits=True)
    assert torch.equal(a, b) and torch.allclose(la, lb, atol=1e-6)
