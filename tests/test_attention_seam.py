"""The attention seam (kvlib.cache.base.attend): the default path, the opt-ins, ragged batches.

The default path must leave update-only caches (chapters 01-03, learners' classes) computing what
they computed before; each opt-in must deliver what it promises and cost nothing to caches without it.
"""

from __future__ import annotations

import functools

import pytest
import torch

from kvlib.attention import causal_attention, causal_mask, ragged_attention
from kvlib.cache.base import ForwardBatch, attend
from kvlib.cache.dense import NaiveKVCache
from kvlib.model import ModelConfig, TinyDecoder, load_model

pytestmark = [pytest.mark.ch01, pytest.mark.ch03]


@functools.cache
def _model(name: str = "shakespeare-gqa") -> TinyDecoder:
    return load_model(name)


def _ids(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 1000, (batch, length), generator=torch.Generator().manual_seed(seed))


def _qkv(q_shape: tuple, kv_shape: tuple, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(q_shape, generator=g), *(torch.randn(kv_shape, generator=g) for _ in range(2)))


def test_causal_mask_hides_exactly_the_future():
    mask = causal_mask(torch.tensor([2, 4]), 5)
    assert mask.tolist() == [[False, False, False, True, True], [False] * 5]
    rows = causal_mask(torch.tensor([[0], [3]]), 4)  # [B, Tq] -> [B, Tq, Tk]
    assert rows.shape == (2, 1, 4) and rows[0, 0].tolist() == [False, True, True, True]


def test_ragged_attention_agrees_with_causal_attention_row_by_row():
    q, k, v = _qkv((3, 4, 2, 8), (3, 2, 9, 8), seed=0)  # 4 query heads share 2 KV heads
    starts = [0, 3, 7]  # each row's two queries sit at its own positions
    positions = torch.tensor([[s, s + 1] for s in starts])
    out = ragged_attention(q, k, v, positions)
    for b, s in enumerate(starts):
        keys, values = (t[b : b + 1, :, : s + 2].repeat_interleave(2, dim=1) for t in (k, v))
        torch.testing.assert_close(out[b : b + 1], causal_attention(q[b : b + 1], keys, values, q_start=s))


def test_causal_attention_returns_the_weights_it_used():
    q, k, v = _qkv((2, 3, 4, 8), (2, 3, 6, 8), seed=1)
    out, weights = causal_attention(q, k, v, return_weights=True)
    torch.testing.assert_close(out, causal_attention(q, k, v))
    assert weights.shape == (2, 3, 4, 6) and torch.allclose(weights.sum(-1), torch.ones(2, 3, 4))
    torch.testing.assert_close(weights @ v, out)
    assert (weights[..., 0, 3:] == 0).all()  # query 0 sits at position 2 of 6: keys 3.. are its future


class ObservingCache(NaiveKVCache):
    """An H2O-style cache: keeps the attention weights the default path hands it."""

    def __init__(self, num_layers: int) -> None:
        super().__init__(num_layers)
        self.seen: list[tuple[int, torch.Tensor]] = []

    def observe_attention(self, layer: int, weights: torch.Tensor) -> None:
        self.seen.append((layer, weights))


def test_observe_attention_gets_the_weights_and_changes_nothing():
    model, ids = _model(), _ids(2, 7)
    plain, observing = NaiveKVCache(6), ObservingCache(6)
    for cache in (plain, observing):
        first = model(ids, cache=cache)
        second = model(ids[:, :1], cache=cache)
        cache.logits = (first, second)
    for a, b in zip(plain.logits, observing.logits):
        assert torch.equal(a, b)
    assert [layer for layer, _ in observing.seen] == [*range(6), *range(6)]
    heads = model.config.num_heads
    assert observing.seen[0][1].shape == (2, heads, 7, 7) and observing.seen[6][1].shape == (2, heads, 1, 8)
    assert torch.allclose(observing.seen[6][1].sum(-1), torch.ones(2, heads, 1))


class PreRopeCache(NaiveKVCache):
    """A StreamingLLM-style cache: stores keys before RoPE and rotates them at attention time."""

    rotates_keys = True

    def attend(self, layer, q, k, v, batch: ForwardBatch):
        k_all, v_all = self.update(layer, k, v)  # unrotated keys of every token so far
        kept = torch.arange(k_all.shape[2])  # no eviction here: position = index in the cache
        q = batch.rope(q, batch.positions)
        return attend(None, layer, q, batch.rope(k_all, kept), v_all, batch)


def test_a_cache_that_rotates_keys_gets_them_before_rope():
    model, ids = _model(), _ids(2, 6)
    dense, pre_rope = NaiveKVCache(6), PreRopeCache(6)
    expected = [model(ids, cache=dense), model(ids[:, :1], cache=dense)]
    got = [model(ids, cache=pre_rope), model(ids[:, :1], cache=pre_rope)]
    for a, b in zip(expected, got):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
    # what it stored are the dense cache's keys before rotation: rotating them gives the dense ones
    from kvlib.model import apply_rope, rope_cos_sin

    cos, sin = rope_cos_sin(torch.arange(7), model.config.head_dim, model.config.rope_theta, torch.float32)
    for layer in range(6):
        assert not torch.allclose(pre_rope.keys[layer], dense.keys[layer])
        torch.testing.assert_close(apply_rope(pre_rope.keys[layer], cos, sin), dense.keys[layer])


def test_rotates_keys_without_attend_is_rotated_at_its_places_in_the_cache():
    class PreRopeUpdateOnly(NaiveKVCache):  # keeps every token: cache index = stream position
        rotates_keys = True

    model, ids = _model(), _ids(2, 6)
    dense, pre_rope = NaiveKVCache(6), PreRopeUpdateOnly(6)
    for chunk in (ids[:, :4], ids[:, 4:], ids[:, :1]):
        torch.testing.assert_close(model(chunk, cache=pre_rope), model(chunk, cache=dense), rtol=0, atol=1e-4)


def test_learner_style_cache_without_base_class_runs_the_default_path():
    class Minimal:  # what a chapter-01 learner writes: update, seq_len, reset, nothing else
        def __init__(self):
            self.k, self.v = [None] * 6, [None] * 6

        def update(self, layer, k, v):
            if self.k[layer] is not None:
                k, v = torch.cat([self.k[layer], k], 2), torch.cat([self.v[layer], v], 2)
            self.k[layer], self.v[layer] = k, v
            return k, v

        @property
        def seq_len(self):
            return 0 if self.k[0] is None else self.k[0].shape[2]

        def reset(self):
            self.__init__()

    model, ids = _model(), _ids(2, 11)
    mine = Minimal()
    cached = torch.cat([model(ids[:, :9], cache=mine), model(ids[:, 9:], cache=mine)], dim=1)
    torch.testing.assert_close(cached, model(ids), rtol=0, atol=1e-4)  # what the uncached model gives
    assert mine.seq_len == 11


def test_padded_rows_without_a_cache_leave_real_tokens_alone():
    model = _model()
    long, short = _ids(1, 9, seed=1), _ids(1, 4, seed=2)
    padded = torch.cat([long, torch.cat([short, torch.zeros(1, 5, dtype=torch.long)], 1)])
    logits = model(padded, lengths=torch.tensor([9, 4]))
    torch.testing.assert_close(logits[0], model(long)[0], rtol=0, atol=1e-4)
    torch.testing.assert_close(logits[1, :4], model(short)[0], rtol=0, atol=1e-4)


def test_a_cache_with_one_length_refuses_a_ragged_batch():
    cache = NaiveKVCache(6)
    with pytest.raises(ValueError, match="per-row lengths such as kvlib.paged.PagedKVCache"):
        _model()(_ids(2, 4), cache=cache, lengths=torch.tensor([4, 2]))
    assert cache.seq_len == 0  # refused before layer 0 stored anything


@pytest.mark.parametrize(
    ("lengths", "match"),
    [
        (torch.tensor([0, 2]), r"lengths must lie in \[1, T=4\]"),
        (torch.tensor([5, 2]), r"lengths must lie in \[1, T=4\]"),
        (torch.tensor([4]), r"integer tensor \[B\]=\[2\]"),
        (torch.tensor([4.0, 2.0]), "integer tensor"),
        ([4, 2], "must be a torch.Tensor"),
    ],
)
def test_bad_lengths_are_named(lengths, match):
    with pytest.raises((ValueError, TypeError), match=match):
        _model()(_ids(2, 4), lengths=lengths)


def test_forward_batch_carries_row_positions():
    seen = []

    class Spy(NaiveKVCache):
        def attend(self, layer, q, k, v, batch):
            seen.append(batch)
            return attend(None, layer, q, k, v, batch)

    model = TinyDecoder(ModelConfig(num_layers=1, dim=32, num_heads=2, num_kv_heads=1, ffn_dim=64)).eval()
    model(_ids(3, 5), positions=torch.arange(10, 15), cache=Spy(1))
    assert seen[0].positions.shape == (3, 5) and seen[0].positions[2].tolist() == list(range(10, 15))
    assert seen[0].lengths is None and seen[0].cos.shape[-2:] == (5, 16)
