"""kvlib.cache.mla: latent keys/values reproduce explicit ones; absorbed, cached decoding is exact."""

from __future__ import annotations

import pytest
import torch

from kvlib.cache.mla import (
    DEEPSEEK_V2_MLA,
    LatentAttention,
    LatentKVCache,
    MLAConfig,
    absorbed_attention,
    expand_latent,
    mla_kv_bytes_per_token,
)
from kvlib.memory import kv_cache_bytes

pytestmark = pytest.mark.ch03

CFG = MLAConfig(dim=32, num_heads=4, head_dim=8, kv_latent_dim=12, rope_dim=4, num_layers=2)


def _layer(cfg: MLAConfig = CFG, seed: int = 0) -> LatentAttention:
    torch.manual_seed(seed)
    return LatentAttention(cfg).eval()


def test_expand_latent_is_the_per_head_up_projection() -> None:
    gen = torch.Generator().manual_seed(0)
    b, t, d_c, h, d = 2, 5, 6, 3, 4
    c = torch.randn(b, t, d_c, generator=gen)
    w_uk, w_uv = torch.randn(h * d, d_c, generator=gen), torch.randn(h * d, d_c, generator=gen)
    k, v = expand_latent(c, w_uk, w_uv, h)
    assert k.shape == v.shape == (b, h, t, d)
    for head in range(h):
        torch.testing.assert_close(k[:, head], c @ w_uk[head * d : (head + 1) * d].T)
        torch.testing.assert_close(v[:, head], c @ w_uv[head * d : (head + 1) * d].T)
    with pytest.raises(ValueError, match="w_uk must be"):
        expand_latent(c, w_uk.T, w_uv, h)


@pytest.mark.parametrize("with_rope", [False, True])
def test_absorbed_attention_equals_explicit_attention(with_rope: bool) -> None:
    gen = torch.Generator().manual_seed(1)
    b, h, d, d_c, r, tq, tk = 2, 4, 8, 6, 4, 3, 7
    q = torch.randn(b, h, tq, d, generator=gen)
    c = torch.randn(b, tk, d_c, generator=gen)
    w_uk, w_uv = torch.randn(h * d, d_c, generator=gen), torch.randn(h * d, d_c, generator=gen)
    q_rope = torch.randn(b, h, tq, r, generator=gen) if with_rope else None
    k_rope = torch.randn(b, tk, r, generator=gen) if with_rope else None
    k, v = expand_latent(c, w_uk, w_uv, h)
    scores = q @ k.transpose(-1, -2)
    if with_rope:
        scores = scores + q_rope @ k_rope.transpose(-1, -2).unsqueeze(1)
    q_pos = torch.arange(tk - tq, tk)[:, None]
    scores = scores.masked_fill(torch.arange(tk)[None, :] > q_pos, float("-inf"))
    expected = torch.softmax(scores / (d + (r if with_rope else 0)) ** 0.5, dim=-1) @ v
    got = absorbed_attention(q, c, w_uk, w_uv, q_rope, k_rope)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_layer_cached_absorbed_decoding_matches_full_explicit_forward() -> None:
    layer = _layer()
    x = torch.randn(2, 9, CFG.dim)
    with torch.no_grad():
        full = layer(x)
        torch.testing.assert_close(layer(x, absorb=True), full, atol=1e-5, rtol=1e-4)
        cache = LatentKVCache(1)
        steps = [layer(x[:, :4], cache=cache, absorb=True)]
        steps += [layer(x[:, i : i + 1], cache=cache, absorb=True) for i in range(4, 9)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-4)
    assert cache.seq_len == 9
    assert cache.nbytes() == 2 * 9 * (CFG.kv_latent_dim + CFG.rope_dim) * 4  # batch * tokens * width * fp32


def test_rope_makes_attention_position_dependent_but_shift_invariant() -> None:
    """Relative positions only: shifting every position by 5 leaves the output unchanged."""
    layer = _layer()
    x = torch.randn(1, 6, CFG.dim)
    with torch.no_grad():
        a = layer(x, positions=torch.arange(6))
        b = layer(x, positions=torch.arange(5, 11))
        c = layer(x, positions=torch.arange(6) * 3)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(a, c, atol=1e-4)


def test_bytes_per_token() -> None:
    assert mla_kv_bytes_per_token(60, 512, 64) == 60 * 576 * 2
    cfg = DEEPSEEK_V2_MLA
    mha = kv_cache_bytes(cfg.num_layers, cfg.num_heads, cfg.head_dim, seq_len=1)
    ratio = mha / mla_kv_bytes_per_token(cfg.num_layers, cfg.kv_latent_dim, cfg.rope_dim)
    assert 56 < ratio < 57  # 32768 / 576
    assert mla_kv_bytes_per_token(1, 3, 0, "int4") == 2  # 1.5 bytes rounded up
    with pytest.raises(ValueError):
        mla_kv_bytes_per_token(0, 512, 64)


def test_cache_rejects_mismatched_inputs() -> None:
    cache = LatentKVCache(2)
    with pytest.raises(ValueError, match="expected c_kv"):
        cache.update(0, torch.zeros(1, 3, 4), torch.zeros(1, 2, 4))
    with pytest.raises(IndexError):
        cache.update(2, torch.zeros(1, 3, 4), torch.zeros(1, 3, 4))
    cache.update(0, torch.zeros(1, 3, 4), torch.zeros(1, 3, 2))
    cache.reset()
    assert cache.seq_len == 0 and cache.nbytes() == 0


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="even"):
        MLAConfig(dim=8, num_heads=2, head_dim=4, kv_latent_dim=4, rope_dim=3)
