"""kvlib.generate: cached greedy generation equals recomputation, with the right calls and positions."""

from __future__ import annotations

import pytest
import torch

from kvlib.cache.dense import NaiveKVCache
from kvlib.generate import (
    compare_cached_uncached,
    generate,
    generate_uncached,
    time_next_token,
    timed_generate,
)
from kvlib.model import ModelConfig, TinyDecoder

pytestmark = pytest.mark.ch01


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=61, dim=32, num_layers=2, num_heads=4, num_kv_heads=2, ffn_dim=64, max_seq_len=64
    )
    m = TinyDecoder(cfg).eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2:
                p.mul_(8.0)  # sharper logits: greedy choices depend on the context
    return m


class Spy:
    def __init__(self, model):
        self.model, self.config, self.calls = model, model.config, []

    def __call__(self, ids, positions=None, cache=None):
        self.calls.append((ids.shape[1], positions.tolist(), cache is not None))
        return self.model(ids, positions=positions, cache=cache)


def test_cached_equals_uncached(model):
    prompt = torch.randint(0, 61, (3, 6))
    ids, logits = generate(model, prompt, 10, NaiveKVCache(2), return_logits=True)
    ids_u, logits_u = generate_uncached(model, prompt, 10, return_logits=True)
    assert ids.shape == (3, 16) and logits.shape == (3, 10, 61)
    assert torch.equal(ids, ids_u)
    assert (logits - logits_u).abs().max() < 1e-4
    assert torch.equal(ids[:, :6], prompt)


def test_one_prefill_then_one_token_per_call_with_positions(model):
    spy = Spy(model)
    generate(spy, torch.randint(0, 61, (1, 4)), 5, NaiveKVCache(2))
    assert spy.calls[0] == (4, [0, 1, 2, 3], True)
    assert [c[1] for c in spy.calls[1:]] == [[4], [5], [6], [7]]
    assert all(c[0] == 1 and c[2] for c in spy.calls[1:])


def test_wrong_decode_positions_change_the_logits(model):
    """The test that makes positions matter: shifting decode positions by one breaks agreement."""
    prompt = torch.randint(0, 61, (1, 5))
    cache = NaiveKVCache(2)
    good = model(prompt, positions=torch.arange(5), cache=cache)
    token = good[:, -1].argmax(-1, keepdim=True)
    right = model(token, positions=torch.tensor([5]), cache=cache)
    cache2 = NaiveKVCache(2)
    model(prompt, positions=torch.arange(5), cache=cache2)
    wrong = model(token, positions=torch.tensor([6]), cache=cache2)
    assert (right - wrong).abs().max() > 1e-3


def test_bad_inputs(model):
    with pytest.raises(ValueError, match="LongTensor"):
        generate(model, torch.zeros(4, dtype=torch.long), 2, NaiveKVCache(2))
    cache = NaiveKVCache(2)
    generate(model, torch.zeros(1, 2, dtype=torch.long), 2, cache)
    with pytest.raises(ValueError, match="empty cache"):
        generate(model, torch.zeros(1, 2, dtype=torch.long), 2, cache)
    ids = generate(model, torch.zeros(1, 2, dtype=torch.long), 0, NaiveKVCache(2))
    assert ids.shape == (1, 2)


def test_timing_helpers_return_consistent_shapes(model):
    prompt = torch.randint(0, 61, (1, 8))
    ids, t = timed_generate(model, prompt, 4, NaiveKVCache(2))
    assert torch.equal(ids, generate(model, prompt, 4, NaiveKVCache(2)))
    assert t.prefill_s > 0 and len(t.decode_s) == 3 and t.total_s >= t.prefill_s
    assert time_next_token(model, prompt, lambda: NaiveKVCache(2), repeats=1, steps=2) > 0
    assert time_next_token(model, prompt, None, repeats=1, steps=2) > 0


def test_timed_generate_feeds_each_token_at_its_position_and_matches_generate(model):
    """timed_generate must make the same calls as generate: the prefill over 0..T-1, then the token chosen
    at step s fed at position T + s (guards against decoding every token one position too far, which
    silently rotates its key by the wrong RoPE angle)."""
    spy = Spy(model)
    timed_generate(spy, torch.randint(0, 61, (1, 4)), 5, NaiveKVCache(2))
    assert spy.calls[0] == (4, [0, 1, 2, 3], True)
    assert [c[1] for c in spy.calls[1:]] == [[4], [5], [6], [7]], "decode positions off by one?"
    prompt = torch.randint(0, 61, (3, 5), generator=torch.Generator().manual_seed(11))
    ids, timings = timed_generate(model, prompt, 10, NaiveKVCache(2))
    assert torch.equal(ids, generate(model, prompt, 10, NaiveKVCache(2))), "timed_generate != generate"
    assert len(timings.decode_s) == 9


def test_cache_speed_benchmark_runs(capsys):
    from kvlib.bench import load

    bench = load("cache-speed")
    import argparse

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(
        ["--model", "random", "--lengths", "8,16", "--repeats", "1", "--steps", "1", "--update-steps", "8"]
    )
    assert bench.main(args) == 0
    out = capsys.readouterr().out
    assert "speed-up" in out and "static (preallocated)" in out and "growing (torch.cat)" in out


def test_new_token_positions_follow_the_cache():
    from kvlib.generate import new_token_positions

    assert new_token_positions(5, 3).tolist() == [5, 6, 7]
    assert new_token_positions(5, 3).dtype == torch.long
    assert new_token_positions(2, 0).dtype == torch.long and new_token_positions(2, 0).numel() == 0


def test_compare_cached_uncached_agrees_on_a_correct_cache_and_not_on_a_forgetful_one(model):
    prompt = torch.randint(0, 61, (2, 5), generator=torch.Generator().manual_seed(3))
    diff, same = compare_cached_uncached(model, prompt, 8, NaiveKVCache(2))
    assert isinstance(diff, float) and diff < 1e-4 and same is True

    class Forgetful(NaiveKVCache):  # keeps only the newest tokens: decode steps lose the context
        def update(self, layer, k, v):
            super().update(layer, k, v)
            return k, v

    diff, same = compare_cached_uncached(model, prompt, 8, Forgetful(2))
    assert diff > 1e-2
