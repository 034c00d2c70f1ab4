"""The evicting caches of chapter 05 (kvlib.cache.evict) and the seam's rotate_in_cache, tested against
computations written out here: kept positions simulated by hand, H2O bookkeeping redone in float64 with
Python loops, and attention references that run the shipped model over the whole stream in one forward
with the visibility each policy promises (a band mask for the window, keys re-numbered inside the cache
for the sinks, per-row and per-KV-head kept sets for H2O), with their own RoPE and softmax.

Unit tests use tagged tensors: the key of token p in batch row b and KV head g holds
``100000 b + 10000 g + p`` in every dim (its value the negative), so a returned tensor says exactly which
tokens came back, in which order.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import functools
import math

import pytest
import torch

from kvlib.cache import evict
from kvlib.cache.base import ForwardBatch, attend, rotate_in_cache, rotates_keys
from kvlib.cache.dense import NaiveKVCache
from kvlib.cache.evict import H2OKVCache, SinkKVCache, SlidingWindowKVCache, ring_order
from kvlib.model import TinyDecoder, load_model

pytestmark = [pytest.mark.ch05, pytest.mark.usefixtures("one_torch_thread")]

THETA = 10000.0
LOGITS_ATOL = 1e-4  # float32 model against float64 references (the seam tests use the same)


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


@functools.cache
def _model() -> TinyDecoder:
    model = load_model("shakespeare-gqa").eval()
    cfg = model.config
    assert (cfg.num_heads, cfg.num_kv_heads, cfg.max_seq_len, cfg.rope_theta) == (8, 2, 512, THETA)
    return model


@functools.cache
def _one_layer_model() -> TinyDecoder:
    """The shipped model cut after its first layer: its keys depend on the token alone, so a cache's
    output for the last token equals the uncached model run on exactly the tokens the cache kept."""
    full = _model()
    small = TinyDecoder(dataclasses.replace(full.config, num_layers=1)).eval()
    state = full.state_dict()
    small.load_state_dict(
        {k: t for k, t in state.items() if not k.startswith("layers.") or k.startswith("layers.0.")}
    )
    return small


def _ids(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 1024, (batch, length), generator=torch.Generator().manual_seed(seed))


def _randn(*shape: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


def _stream_logits(model: TinyDecoder, ids: torch.Tensor, chunks: tuple[int, ...], cache) -> torch.Tensor:
    """The model over ``ids`` chunk by chunk through ``cache`` (default positions): [B, N, V]."""
    out, s = [], 0
    for T in chunks:
        out.append(model(ids[:, s : s + T], cache=cache))
        s += T
    assert s == ids.shape[1]
    return torch.cat(out, 1)


# --- tagged tensors ----------------------------------------------------------------------------------


def _tags(B: int, KV: int, positions: list[int], D: int = 4) -> torch.Tensor:
    """[B, KV, len(positions), D]: the key tag of each listed token (see the module docstring)."""
    pos = torch.tensor(positions, dtype=torch.float32).view(1, 1, -1, 1)
    rows = 100000.0 * torch.arange(B, dtype=torch.float32).view(B, 1, 1, 1)
    heads = 10000.0 * torch.arange(KV, dtype=torch.float32).view(1, KV, 1, 1)
    return (rows + heads + pos).expand(B, KV, len(positions), D).contiguous()


def _chunk(B: int, KV: int, first: int, T: int, D: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    k = _tags(B, KV, list(range(first, first + T)), D)
    return k, -k


def _positions_in(keys: torch.Tensor, b: int, g: int) -> list[int]:
    """Which tokens a returned tagged key tensor [B, KV, n, D] holds for row b and KV head g."""
    return (keys[b, g, :, 0] - 100000 * b - 10000 * g).round().long().tolist()


def _causal_softmax(B: int, H: int, T: int, n: int, g: torch.Generator) -> torch.Tensor:
    """Random attention weights [B, H, T, n] of T queries that are the last T of n keys. Peaked (scores
    of spread 4) so that rows and heads pick different heavy hitters; with flat weights the oldest
    tokens win everywhere, having been seen by the most queries."""
    future = torch.arange(n) > torch.arange(n - T, n)[:, None]  # (T, n)
    return (4 * torch.randn(B, H, T, n, generator=g)).masked_fill(future, -math.inf).softmax(-1)


def _feed(cache, chunks, B=2, KV=2, H=8, D=4, seed=0, dtype=None):
    """Feed chunks to every layer of ``cache`` (tagged tensors, or random ones of ``dtype``); an H2O cache
    observes random causal softmax weights after each update. Yields, after each update and before its
    observe: (seen before the chunk, T, layer, what kv_length_after predicted, keys, values, k, v)."""
    g = torch.Generator().manual_seed(seed)
    seen = 0
    for T in chunks:
        for layer in range(cache.num_layers):
            if dtype is None:
                k, v = _chunk(B, KV, seen, T, D)
            else:
                k, v = (torch.randn(B, KV, T, D, generator=g).to(dtype) for _ in range(2))
            predicted = cache.kv_length_after(layer, T)
            keys, values = cache.update(layer, k, v)
            yield seen, T, layer, predicted, keys, values, k, v
            if isinstance(cache, H2OKVCache):
                cache.observe_attention(layer, _causal_softmax(B, H, T, keys.shape[2], g))
        seen += T


MIXED_CHUNKS = (3, 1, 5, 1, 1, 9, 2, 1, 1, 4, 1, 1, 1)  # prefill, decode, chunks longer than any budget


MAKERS = {  # fresh caches with a budget of 4 to 5 tokens: every parametrized test gets its own
    "window": lambda layers=2: SlidingWindowKVCache(layers, 4),
    "sinks": lambda layers=2: SinkKVCache(layers, num_sinks=2, window=4),
    "h2o": lambda layers=2: H2OKVCache(layers, heavy=2, recent=2, num_sinks=1),
}


# --- what each policy keeps, from its docstring -------------------------------------------------------


def _window_keeps(seen: int, window: int) -> list[int]:
    return list(range(max(0, seen - window), seen))


def _sink_keeps(seen: int, sinks: int, window: int) -> list[int]:
    return [p for p in range(seen) if p < sinks or p >= max(sinks, seen - window)]


def _h2o_keeps(
    candidates: list[int], seen: int, scores: dict, sinks: int, heavy: int, recent: int
) -> list[int]:
    """H2O by hand: keep the stream's first ``sinks`` and last ``recent`` tokens and the ``heavy`` highest
    scores among the rest (the earlier token on a tie), in stream order. (On a cache's own states, where
    every sink and recent position is held, that is the whole budget once more is held.)"""
    protected = [p for p in candidates if p < sinks or p >= seen - recent]
    others = sorted((p for p in candidates if p not in protected), key=lambda p: (-scores[p], p))
    return sorted(protected + others[:heavy])


# --- ring_order and the sliding window's ring buffer ----------------------------------------------------


@pytest.mark.parametrize("capacity", [1, 2, 3, 5])
def test_ring_order_lists_the_slots_of_the_last_capacity_items_oldest_first(capacity):
    for seen in range(13):
        got = ring_order(seen, capacity)
        assert got.tolist() == [p % capacity for p in range(max(0, seen - capacity), seen)], f"seen={seen}"
        assert got.dtype == torch.long


def test_window_update_returns_kept_oldest_first_then_every_new_token():
    B, KV, W = 2, 2, 4
    cache = SlidingWindowKVCache(2, W)
    for seen, T, layer, _, keys, values, _, _ in _feed(cache, MIXED_CHUNKS, B, KV):
        expected = _window_keeps(seen, W) + list(range(seen, seen + T))
        assert torch.equal(keys, _tags(B, KV, expected)), (
            f"chunk {T} at {seen}: got {_positions_in(keys, 1, 1)}"
        )
        assert torch.equal(values, -_tags(B, KV, expected)), "values must come back beside their keys"
        assert cache.kept_positions(layer).tolist() == _window_keeps(seen + T, W)


def test_window_token_p_sits_in_slot_p_mod_window_and_a_decode_step_writes_one_slot():
    B, KV, W = 2, 2, 5
    cache, seen = SlidingWindowKVCache(1, W), 0
    for T in (3, 1, 7, 1, 1, 2):
        cache.update(0, *_chunk(B, KV, seen, T))
        seen += T
        for p in _window_keeps(seen, W):
            assert torch.equal(cache.ring.keys[0][:, :, p % W], _tags(B, KV, [p])[:, :, 0]), f"token {p}"
            assert torch.equal(cache.ring.values[0][:, :, p % W], -_tags(B, KV, [p])[:, :, 0])
    buffer, before = cache.ring.keys[0], cache.ring.keys[0].clone()
    cache.update(0, *_chunk(B, KV, seen, 1))
    assert cache.ring.keys[0] is buffer, "a decode step must write into the ring buffer, not reallocate it"
    changed = [s for s in range(W) if not torch.equal(before[:, :, s], buffer[:, :, s])]
    assert changed == [seen % W], "a decode step must overwrite exactly the slot of the token it evicts"


def test_window_prefill_longer_than_the_window_returns_all_of_it_and_keeps_the_last_window():
    B, KV, W, T = 2, 2, 4, 11
    cache = SlidingWindowKVCache(1, W)
    keys, values = cache.update(0, *_chunk(B, KV, 0, T))
    assert torch.equal(keys, _tags(B, KV, list(range(T)))), (
        "a long chunk must attend causally over all of itself"
    )
    assert torch.equal(values, -_tags(B, KV, list(range(T))))
    assert cache.kept_positions(0).tolist() == [7, 8, 9, 10]
    keys, _ = cache.update(0, *_chunk(B, KV, T, 1))
    assert _positions_in(keys, 1, 1) == [7, 8, 9, 10, 11]


def test_sink_update_returns_sinks_window_and_new_tokens_in_stream_order_before_rope():
    B, KV, S, W = 2, 2, 3, 4
    cache = SinkKVCache(2, num_sinks=S, window=W)
    assert rotates_keys(cache), "the seam must rotate a sink cache's keys"
    for seen, T, layer, _, keys, values, _, _ in _feed(cache, (2, 2, 5, 1, 1, 7, 1, 2, 1), B, KV):
        expected = _sink_keeps(seen, S, W) + list(range(seen, seen + T))
        # the cache returns the keys it was given, unrotated (the tags would change under RoPE)
        assert torch.equal(keys, _tags(B, KV, expected)), (
            f"chunk {T} at {seen}: got {_positions_in(keys, 0, 1)}"
        )
        assert torch.equal(values, -_tags(B, KV, expected))
        assert cache.kept_positions(layer).tolist() == _sink_keeps(seen + T, S, W)


def test_sink_cache_without_sinks_keeps_what_the_window_keeps():
    window, sinks = SlidingWindowKVCache(1, 4), SinkKVCache(1, num_sinks=0, window=4)
    for a, b in zip(_feed(window, MIXED_CHUNKS), _feed(sinks, MIXED_CHUNKS)):
        assert torch.equal(a[4], b[4])
    assert torch.equal(window.kept_positions(0), sinks.kept_positions(0))


def test_only_the_sink_cache_takes_keys_before_rope():
    window, sinks, h2o = (make() for make in MAKERS.values())
    assert rotates_keys(sinks) and not rotates_keys(window) and not rotates_keys(h2o)


@pytest.mark.parametrize("kind", MAKERS)
def test_kv_length_after_is_what_the_next_update_returns(kind):
    cache = MAKERS[kind]()
    for seen, T, layer, predicted, keys, *_ in _feed(cache, MIXED_CHUNKS):
        assert keys.shape[2] == predicted, f"layer {layer}, {T} new tokens after {seen}: said {predicted}"


@pytest.mark.parametrize("kind", MAKERS)
def test_seq_len_counts_every_token_seen_by_layer_zero_evicted_ones_included(kind):
    cache = MAKERS[kind]()
    seen = 0
    for s, T, layer, *_ in _feed(cache, MIXED_CHUNKS):
        if layer == cache.num_layers - 1:
            seen = s + T
            assert cache.seq_len == seen
    assert seen == sum(MIXED_CHUNKS) and cache.seq_len == seen  # 31 tokens, at most 5 kept
    cache.update(1, *_chunk(2, 2, seen, 2))  # layer 1 alone: not layer 0's count
    assert cache.seq_len == seen
    if isinstance(cache, H2OKVCache):
        cache.observe_attention(1, torch.full((2, 8, 2, cache.kv_length_after(1, 0)), 0.1))
    cache.update(0, *_chunk(2, 2, seen, 3))
    assert cache.seq_len == seen + 3


@pytest.mark.parametrize("kind", MAKERS)
def test_reset_forgets_everything_and_the_cache_then_runs_like_a_new_one(kind):
    cache = MAKERS[kind]()
    list(_feed(cache, MIXED_CHUNKS))
    assert cache.nbytes() > 0
    cache.reset()
    assert cache.seq_len == 0 and cache.nbytes() == 0
    assert cache.kept_positions(0).numel() == 0 and cache.kv_length_after(0, 3) == 3
    # after reset a different batch, head count and dtype are a new sequence, not an error
    fresh = MAKERS[kind]()
    steps = [list(_feed(c, MIXED_CHUNKS, B=3, KV=1, H=2, dtype=torch.float16)) for c in (cache, fresh)]
    for got, want in zip(*steps, strict=True):
        assert torch.equal(got[4], want[4]) and torch.equal(got[5], want[5])
    assert torch.equal(cache.kept_positions(1), fresh.kept_positions(1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("kind", MAKERS)
def test_nbytes_stays_flat_as_the_stream_grows_from_10_to_1000_tokens(kind, dtype):
    cache = MAKERS[kind]()
    B, KV, D, layers = 2, 2, 4, cache.num_layers
    sizes = iter(torch.randint(1, 10, (1000,), generator=torch.Generator().manual_seed(5)).tolist())
    g = torch.Generator().manual_seed(6)
    naive, measured, seen = NaiveKVCache(layers), {}, 0
    while seen < 1000:
        target = min(m for m in (10, 100, 1000) if m > seen)
        T = min(next(sizes), target - seen)
        for layer in range(layers):
            k, v = (torch.randn(B, KV, T, D, generator=g).to(dtype) for _ in range(2))
            keys, _ = cache.update(layer, k, v)
            naive.update(layer, k, v)
            if isinstance(cache, H2OKVCache):
                cache.observe_attention(layer, _causal_softmax(B, 8, T, keys.shape[2], g))
        seen += T
        if seen in (10, 100, 1000):
            measured[seen] = (cache.nbytes(), naive.nbytes())
    elem = torch.empty(0, dtype=dtype).element_size()
    per_token = {  # bytes of one kept token of one layer, batch row and KV head
        SlidingWindowKVCache: (4, 2 * D * elem),
        SinkKVCache: (2 + 4, 2 * D * elem),
        H2OKVCache: (1 + 2 + 2, 2 * D * elem + 4 + 8),  # + float32 score and int64 position
    }
    budget, token_bytes = per_token[type(cache)]
    expected = layers * B * KV * budget * token_bytes
    assert {m: c for m, (c, _) in measured.items()} == {10: expected, 100: expected, 1000: expected}, (
        f"nbytes must stay at {budget} tokens per layer, row and KV head ({expected} bytes); naive grows "
        f"{[n for _, n in measured.values()]}"
    )
    assert measured[1000][1] == 100 * measured[10][1]  # the control: a cache that keeps every token


# --- H2O's choice against brute-force bookkeeping ------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_h2o_keeps_what_brute_force_bookkeeping_keeps_per_row_and_kv_head(dtype):
    B, KV, H, S, heavy, recent = 2, 2, 8, 1, 3, 2
    rep = H // KV
    cache = H2OKVCache(1, heavy=heavy, recent=recent, num_sinks=S)
    kept = [[[] for _ in range(KV)] for _ in range(B)]
    scores = [[collections.defaultdict(float) for _ in range(KV)] for _ in range(B)]
    history_k, history_v = torch.empty(B, KV, 0, 4, dtype=dtype), torch.empty(B, KV, 0, 4, dtype=dtype)
    g = torch.Generator().manual_seed(3)
    seen, rows_differ = 0, False
    for T in (5, 1, 1, 1, 4, 1, 1, 1, 1, 8, 1, 1, 1, 1, 1, 1):
        k, v = (torch.randn(B, KV, T, 4, generator=g).to(dtype) for _ in range(2))
        history_k, history_v = torch.cat([history_k, k], 2), torch.cat([history_v, v], 2)
        keys, values = cache.update(0, k, v)
        assert keys.dtype == dtype and values.dtype == dtype
        weights = _causal_softmax(B, H, T, keys.shape[2], g)
        cache.observe_attention(0, weights)
        for b in range(B):
            for kv in range(KV):
                idx = kept[b][kv] + list(range(seen, seen + T))
                assert torch.equal(keys[b, kv], history_k[b, kv, idx]), f"row {b} head {kv}: returned keys"
                assert torch.equal(values[b, kv], history_v[b, kv, idx])
                received = weights[b, kv * rep : (kv + 1) * rep].double().sum((0, 1))  # heads of the group
                for p, r in zip(idx, received.tolist()):
                    scores[b][kv][p] += r
                kept[b][kv] = _h2o_keeps(idx, seen + T, scores[b][kv], S, heavy, recent)
        seen += T
        got = cache.kept_positions(0)
        assert got.tolist() == kept, f"after {seen} tokens: kept {got.tolist()}, brute force {kept}"
        rows_differ |= kept[0] != kept[1] or kept[0][0] != kept[0][1]
    assert rows_differ, "the data should make rows and KV heads choose different tokens"


def _evict_function(name: str):
    """h2o_accumulate and h2o_keep_mask: public in kvlib.cache.evict once the chapter-05 exercises land."""
    fn = getattr(evict, name, None)
    if fn is None:
        pytest.skip(f"kvlib.cache.evict has no {name} yet")
    return fn


def test_h2o_accumulate_adds_column_sums_over_queries_and_the_heads_of_each_group():
    accumulate = _evict_function("h2o_accumulate")
    scores, w = _randn(2, 2, 7, seed=30).abs(), _causal_softmax(2, 8, 3, 7, torch.Generator().manual_seed(31))
    scores0, w0 = scores.clone(), w.clone()
    got = accumulate(scores, w)
    expected = scores.double().clone()
    for b in range(2):
        for h in range(8):
            for i in range(3):
                for j in range(7):
                    expected[b, h // 4, j] += float(w[b, h, i, j])  # query head h reads KV head h // 4
    assert got.dtype == torch.float32 and got.shape == (2, 2, 7)
    torch.testing.assert_close(got.double(), expected, rtol=0, atol=1e-6)
    assert torch.equal(scores, scores0) and torch.equal(w, w0), "h2o_accumulate must not modify its inputs"


def test_h2o_keep_mask_is_brute_force_h2o_for_every_row_and_head():
    keep_mask = _evict_function("h2o_keep_mask")
    g = torch.Generator().manual_seed(32)
    positions = torch.stack([torch.randperm(30, generator=g)[:12].sort().values for _ in range(4)]).view(
        2, 2, 12
    )
    scores = torch.randint(0, 4, (2, 2, 12), generator=g).float()  # few distinct values: many ties
    for sinks, heavy, recent in ((0, 3, 2), (2, 4, 3), (1, 0, 1), (3, 20, 2)):
        mask = keep_mask(scores, positions, 30, sinks, heavy, recent)
        for b in range(2):
            for kv in range(2):
                pos = positions[b, kv].tolist()
                by_pos = dict(zip(pos, scores[b, kv].tolist()))
                expected = _h2o_keeps(pos, 30, by_pos, sinks, heavy, recent)
                assert [p for p, m in zip(pos, mask[b, kv].tolist()) if m] == expected, (sinks, heavy, recent)


def test_h2o_sums_the_weights_of_the_query_heads_of_each_group():
    cache = H2OKVCache(1, heavy=1, recent=1)  # 5 tokens, token 4 is recent; one of 0..3 stays
    k = _randn(1, 2, 5, 4, seed=0)
    cache.update(0, k, k)
    w = torch.zeros(1, 8, 5, 5)
    w[0, 0, 0, 1] = 1.0  # group 0 (heads 0-3): token 1 gets 1.0 from one head ...
    w[0, 1:4, 0, 2] = 0.4  # ... token 2 gets 3 x 0.4 = 1.2 from the three others
    w[0, 4, 0, 3] = 0.9  # group 1 (heads 4-7): token 3 gets 0.9 ...
    w[0, 5, 0, 0] = w[0, 7, 0, 0] = 0.5  # ... token 0 gets 1.0
    w[0, 2, 0, 3] = 5.0  # head 2 is in group 0: with h % num_kv_heads grouping token 3 would win there
    w[0, 2, 0, 2] = 0.0
    w[0, 3, 0, 2] = 1.0  # group 0 now: token 1 -> 1.0, token 2 -> 0.4 + 1.0 + 0.4 = 1.8, token 3 -> 5.0
    cache.observe_attention(0, w)
    assert cache.kept_positions(0).tolist() == [[[3, 4], [0, 4]]], (
        "query head h belongs to KV head h // (num_heads // num_kv_heads), and its weights add up"
    )


def test_h2o_tie_keeps_the_earlier_token_and_a_higher_score_wins():
    for weights, expected in ((torch.zeros(1, 2, 4, 4), [0, 3]), (None, [2, 3])):
        cache = H2OKVCache(1, heavy=1, recent=1)
        k = _randn(1, 1, 4, 4, seed=1)
        cache.update(0, k, k)
        if weights is None:
            weights = torch.zeros(1, 2, 4, 4)
            weights[0, 1, 3, 2] = 1e-3  # token 2 just ahead of 0 and 1
        cache.observe_attention(0, weights)
        assert cache.kept_positions(0).tolist() == [[expected]]


def test_h2o_never_evicts_the_sinks_or_the_recent_window():
    cache = H2OKVCache(1, heavy=1, recent=2, num_sinks=2)
    k = _randn(1, 1, 10, 4, seed=2)
    cache.update(0, k, k)
    w = torch.zeros(1, 1, 10, 10)
    w[..., 2:8] = torch.arange(1.0, 7.0)  # every middle token outscores the sinks and the recent ones
    cache.observe_attention(0, w)
    assert cache.kept_positions(0).tolist() == [[[0, 1, 7, 8, 9]]]
    for p in range(10, 16):
        cache.update(0, *(_randn(1, 1, 1, 4, seed=p),) * 2)
        w = torch.zeros(1, 1, 1, 6)
        w[..., 2] = 100.0  # the heavy hitter keeps collecting; sinks get nothing
        cache.observe_attention(0, w)
        assert cache.kept_positions(0).tolist() == [[[0, 1, 7, p - 1, p]]]


def test_h2o_second_update_without_observe_raises_and_changes_nothing():
    cache = H2OKVCache(2, heavy=2, recent=2)
    k = _randn(2, 2, 6, 4, seed=4)
    cache.update(0, k, k)
    before = (cache.seq_len, cache.kv_length_after(0, 0), cache.nbytes())
    with pytest.raises(RuntimeError, match="without observe_attention"):
        cache.update(0, k[:, :, :1], k[:, :, :1])
    assert (cache.seq_len, cache.kv_length_after(0, 0), cache.nbytes()) == before
    cache.update(1, k, k)  # another layer is not blocked
    cache.observe_attention(0, torch.full((2, 8, 6, 6), 1 / 6))
    keys, _ = cache.update(0, k[:, :, :1], k[:, :, :1])
    assert keys.shape[2] == 5 and cache.seq_len == 7


# --- every cache: dtypes, inputs, separate objects ------------------------------------------------------


@pytest.mark.parametrize("kind", MAKERS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32], ids=str)
def test_keys_and_values_come_back_in_the_input_dtype_bit_for_bit(kind, dtype):
    cache = MAKERS[kind]()
    B, KV, D = 2, 2, 4
    g = torch.Generator().manual_seed(9)
    history = [(torch.empty(B, KV, 0, D, dtype=dtype),) * 2 for _ in range(2)]
    seen = 0
    for T in MIXED_CHUNKS:
        for layer in range(2):
            k, v = (torch.randn(B, KV, T, D, generator=g).to(dtype) for _ in range(2))
            kept = cache.kept_positions(layer).expand(B, KV, -1)  # [kept] (window, sinks) or [B, KV, kept]
            keys, values = cache.update(layer, k, v)
            hk, hv = history[layer] = (
                torch.cat([history[layer][0], k], 2),
                torch.cat([history[layer][1], v], 2),
            )
            assert keys.dtype == dtype and values.dtype == dtype, f"{keys.dtype} came back for {dtype}"
            idx = torch.cat([kept, torch.arange(seen, seen + T).expand(B, KV, T)], 2)[..., None].expand(
                -1, -1, -1, D
            )
            assert torch.equal(keys, hk.gather(2, idx)) and torch.equal(values, hv.gather(2, idx))
            if isinstance(cache, H2OKVCache):
                cache.observe_attention(layer, _causal_softmax(B, 8, T, keys.shape[2], g))
        seen += T


@pytest.mark.parametrize("kind", MAKERS)
def test_inputs_are_not_modified(kind):
    cache = MAKERS[kind]()
    g = torch.Generator().manual_seed(8)
    for T in MIXED_CHUNKS:
        for layer in range(2):
            k, v = torch.randn(2, 2, T, 4, generator=g), torch.randn(2, 2, T, 4, generator=g)
            k0, v0 = k.clone(), v.clone()
            keys, _ = cache.update(layer, k, v)
            if isinstance(cache, H2OKVCache):
                w = _causal_softmax(2, 8, T, keys.shape[2], g)
                w0 = w.clone()
                cache.observe_attention(layer, w)
                assert torch.equal(w, w0), "observe_attention changed the weights it was given"
            assert torch.equal(k, k0) and torch.equal(v, v0), "update changed the k or v it was given"


@pytest.mark.parametrize("kind", MAKERS)
def test_two_caches_share_no_state(kind):
    alone, first, second, untouched = (MAKERS[kind]() for _ in range(4))
    solo = [(e[4], e[5]) for e in _feed(alone, MIXED_CHUNKS, seed=1)]
    other = _feed(second, MIXED_CHUNKS, B=3, KV=1, H=4, seed=2, dtype=torch.float16)
    for (keys, values), mine in zip(solo, _feed(first, MIXED_CHUNKS, seed=1), strict=True):
        next(other)  # the other cache stores different data between this one's updates
        assert torch.equal(keys, mine[4]) and torch.equal(values, mine[5])
    assert torch.equal(first.kept_positions(1), alone.kept_positions(1))
    assert untouched.seq_len == 0 and untouched.nbytes() == 0 and untouched.kept_positions(0).numel() == 0


# --- the seam: rotate_in_cache ----------------------------------------------------------------------------


def _rope(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """RoPE written out (Llama's pairs (i, i + D/2)), float64 out; angles in float32 as the model does."""
    D = x.shape[-1]
    inv_freq = 1.0 / THETA ** (torch.arange(0, D, 2).float() / D)
    angles = positions.float()[:, None] * inv_freq  # (n, D/2)
    cos, sin = angles.cos().double(), angles.sin().double()
    x1, x2 = x[..., : D // 2].double(), x[..., D // 2 :].double()
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)


def _batch_at(positions: torch.Tensor) -> ForwardBatch:
    """A ForwardBatch whose positions (and cos/sin) are deliberately not the in-cache ones."""
    dummy = torch.zeros(1, 1, positions.shape[-1], 32)
    return ForwardBatch(positions, None, dummy, dummy, THETA)


def test_rotate_in_cache_rotates_keys_at_0_to_n_minus_1_and_queries_at_the_last_t():
    q, k = _randn(2, 8, 3, 32, seed=10), _randn(2, 2, 7, 32, seed=11)
    q0, k0 = q.clone(), k.clone()
    rq, rk = rotate_in_cache(q, k, _batch_at(torch.arange(500, 503).expand(2, 3)))
    torch.testing.assert_close(rk.double(), _rope(k, torch.arange(7)), rtol=0, atol=1e-5)
    torch.testing.assert_close(rq.double(), _rope(q, torch.tensor([4, 5, 6])), rtol=0, atol=1e-5)
    assert rq.dtype == rk.dtype == torch.float32 and torch.equal(q, q0) and torch.equal(k, k0)


def _masked_reference(q, k, v, hidden) -> torch.Tensor:
    """softmax(q k^T / sqrt(D), -inf where hidden) v in float64; k, v [B, KV, n, D] shared by groups."""
    rep = q.shape[1] // k.shape[1]
    k, v = k.double().repeat_interleave(rep, 1), v.double().repeat_interleave(rep, 1)
    scores = q.double() @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    return scores.masked_fill(hidden, -math.inf).softmax(-1) @ v


class _GappedPreRope:
    """An update-only rotates_keys cache that keeps stream tokens 0, 1, 5, 6 and adds the new ones."""

    rotates_keys = True

    def __init__(self, old_k, old_v):
        self.old_k, self.old_v = old_k, old_v

    def update(self, layer, k, v):
        keep = [0, 1, 5, 6]
        return torch.cat([self.old_k[:, :, keep], k], 2), torch.cat([self.old_v[:, :, keep], v], 2)

    seq_len = 9

    def reset(self):
        pass


def test_attend_rotates_an_update_only_cache_at_its_places_in_the_cache_not_the_stream():
    B, H, KV, T, D = 2, 8, 2, 2, 32
    old_k, old_v = _randn(B, KV, 7, D, seed=12), _randn(B, KV, 7, D, seed=13)
    q, k, v = _randn(B, H, T, D, seed=14), _randn(B, KV, T, D, seed=15), _randn(B, KV, T, D, seed=16)
    out = attend(_GappedPreRope(old_k, old_v), 0, q, k, v, _batch_at(torch.arange(7, 9).expand(B, T)))
    keys = torch.cat([old_k[:, :, [0, 1, 5, 6]], k], 2)  # 6 keys: in-cache positions 0..5
    values = torch.cat([old_v[:, :, [0, 1, 5, 6]], v], 2)
    hidden = torch.arange(6) > torch.tensor([4, 5])[:, None]  # query i sits at in-cache position 4 + i
    expected = _masked_reference(_rope(q, torch.tensor([4, 5])), _rope(keys, torch.arange(6)), values, hidden)
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=1e-5)
    # the same tokens rotated at their stream positions (0, 1, 5, 6, 7, 8) give another answer
    stream = _masked_reference(
        _rope(q, torch.tensor([7, 8])), _rope(keys, torch.tensor([0, 1, 5, 6, 7, 8])), values, hidden
    )
    assert (out.double() - stream).abs().max() > 1e-2


# --- the model with each cache against references over the whole stream ---------------------------------


class _BandMask:
    """An own-attend "cache" for a full-sequence forward: the token at p sees keys ``lo[p] .. p``, with
    keys rotated at absolute positions (what a sliding window promises)."""

    def __init__(self, lo: torch.Tensor) -> None:
        self.lo = lo  # (N,)

    def reset(self) -> None:
        pass

    def attend(self, layer, q, k, v, batch):
        j = torch.arange(q.shape[2])
        hidden = (j[None, :] > j[:, None]) | (j[None, :] < self.lo[:, None])  # (N, N)
        return _masked_reference(q, k, v, hidden).to(q.dtype)


def _window_lo(chunks: tuple[int, ...], window: int) -> torch.Tensor:
    """Oldest key each token sees: a chunk starting at s sees the last ``window`` tokens before s."""
    lo, s = [], 0
    for T in chunks:
        lo += [max(0, s - window)] * T
        s += T
    return torch.tensor(lo)


class _Chunked:
    """An own-attend "cache" for a full-sequence forward: chunk by chunk, each batch row and KV head sees
    the keys ``keeps`` kept before the chunk plus the chunk itself (causal inside it), and accumulates the
    attention each key received (for H2O). ``renumber``: keys arrive before RoPE and are rotated at their
    index in that list, the queries at the last T indices (StreamingLLM)."""

    def __init__(self, chunks, keeps, renumber: bool = False) -> None:
        self.chunks, self.keeps, self.rotates_keys = chunks, keeps, renumber
        self.kept: dict[int, list] = {}

    def reset(self) -> None:
        pass

    def attend(self, layer, q, k, v, batch):
        B, H, N, D = q.shape
        KV = k.shape[1]
        rep = H // KV
        assert sum(self.chunks) == N
        out = torch.zeros(B, H, N, D, dtype=torch.float64)
        kept = [[[] for _ in range(KV)] for _ in range(B)]
        scores = [[collections.defaultdict(float) for _ in range(KV)] for _ in range(B)]
        s = 0
        for T in self.chunks:
            for b in range(B):
                for g in range(KV):
                    idx = kept[b][g] + list(range(s, s + T))
                    n, heads = len(idx), slice(g * rep, (g + 1) * rep)
                    keys, values, queries = (
                        k[b, g, idx].double(),
                        v[b, g, idx].double(),
                        q[b, heads, s : s + T],
                    )
                    if self.rotates_keys:
                        keys, queries = _rope(keys, torch.arange(n)), _rope(queries, torch.arange(n - T, n))
                    future = torch.arange(n) > torch.arange(n - T, n)[:, None]  # (T, n)
                    att = queries.double() @ keys.T / math.sqrt(D)  # (rep, T, n)
                    w = att.masked_fill(future, -math.inf).softmax(-1)
                    out[b, heads, s : s + T] = w @ values
                    for p, r in zip(idx, w.sum((0, 1)).tolist()):
                        scores[b][g][p] += r
                    kept[b][g] = self.keeps(idx, s + T, scores[b][g])
            s += T
        self.kept[layer] = kept
        return out.to(q.dtype)


def _reference_logits(model, ids, reference) -> torch.Tensor:
    return model(ids, positions=torch.arange(ids.shape[1]), cache=reference)


WINDOW_CHUNKS = (9, 1, 1, 1, 1, 5, 1, 1, 1, 1, 1, 1)  # 24 tokens: a prefill longer than the window


def test_window_logits_equal_full_attention_with_a_band_mask_in_every_position():
    model, ids, W = _model(), _ids(2, 24, seed=20), 6
    got = _stream_logits(model, ids, WINDOW_CHUNKS, SlidingWindowKVCache(6, W))
    expected = _reference_logits(model, ids, _BandMask(_window_lo(WINDOW_CHUNKS, W)))
    torch.testing.assert_close(got, expected, rtol=0, atol=LOGITS_ATOL)
    dense = model(ids)  # the control: the window must make a difference here
    assert (got[:, -6:] - dense[:, -6:]).abs().max() > 1e-2


SINK_CHUNKS = (2, 1, 1, 8, 1, 1, 1, 1, 1, 1, 4, 1, 1, 1, 1, 1)  # 27 tokens; chunks cross the sinks


def test_sink_logits_equal_attention_over_the_kept_tokens_renumbered_inside_the_cache():
    model, ids, S, W = _model(), _ids(2, 27, seed=21), 3, 6
    cache = SinkKVCache(6, num_sinks=S, window=W)
    got = _stream_logits(model, ids, SINK_CHUNKS, cache)
    reference = _Chunked(SINK_CHUNKS, lambda idx, seen, _: [p for p in idx if p < S or p >= seen - W], True)
    torch.testing.assert_close(got, _reference_logits(model, ids, reference), rtol=0, atol=LOGITS_ATOL)
    for layer in range(6):
        assert cache.kept_positions(layer).tolist() == reference.kept[layer][0][0] == _sink_keeps(27, S, W)


def test_sink_cache_that_caches_rotated_keys_is_the_classic_bug_the_reference_catches():
    class RotatedSinks(SinkKVCache):  # keys rotated at stream positions, then evicted from the middle
        rotates_keys = False

    model, ids, S, W = _model(), _ids(2, 27, seed=21), 3, 6
    got = _stream_logits(model, ids, SINK_CHUNKS, RotatedSinks(6, num_sinks=S, window=W))
    reference = _Chunked(SINK_CHUNKS, lambda idx, seen, _: [p for p in idx if p < S or p >= seen - W], True)
    assert (got - _reference_logits(model, ids, reference))[:, -8:].abs().max() > 1e-2


@pytest.mark.parametrize("kind", ["window", "sinks"])
def test_one_layer_decode_logits_equal_the_uncached_model_on_exactly_the_kept_tokens(kind):
    """StreamingLLM's definition: evicted tokens cut out, the rest closed up and numbered 0..n-1.
    Exact for a one-layer model (deeper layers' keys depend on what each token saw when it was new)."""
    model, ids = _one_layer_model(), _ids(2, 30, seed=22)
    cache = SlidingWindowKVCache(1, 7) if kind == "window" else SinkKVCache(1, num_sinks=3, window=7)
    _stream_logits(model, ids[:, :20], (12, 1, 1, 1, 5), cache)
    for p in range(20, 30):
        kept = cache.kept_positions(0).tolist()
        got = model(ids[:, p : p + 1], cache=cache)[:, -1]
        expected = model(ids[:, kept + [p]])[:, -1]  # no cache, positions 0..n-1
        torch.testing.assert_close(got, expected, rtol=0, atol=LOGITS_ATOL)


H2O_CHUNKS = (8,) + (1,) * 16 + (4,) + (1,) * 4  # 32 tokens


def test_h2o_logits_and_choices_equal_brute_force_h2o_in_every_layer():
    model, ids, S, heavy, recent = _model(), _ids(2, 32, seed=23), 2, 4, 3
    cache = H2OKVCache(6, heavy=heavy, recent=recent, num_sinks=S)
    got = _stream_logits(model, ids, H2O_CHUNKS, cache)
    reference = _Chunked(H2O_CHUNKS, lambda idx, seen, sc: _h2o_keeps(idx, seen, sc, S, heavy, recent))
    torch.testing.assert_close(got, _reference_logits(model, ids, reference), rtol=0, atol=LOGITS_ATOL)
    differ = 0
    for layer in range(6):
        kept = cache.kept_positions(layer)
        assert kept.tolist() == reference.kept[layer], f"layer {layer}"
        differ += not torch.equal(kept[0], kept[1])
    assert differ, "the two batch rows should keep different tokens"
    assert (got[:, -5:] - model(ids)[:, -5:]).abs().max() > 1e-2  # the control: eviction changed something


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("kind", MAKERS)
def test_the_model_in_half_precision_keeps_its_dtype_in_each_cache(kind, dtype):
    """Measured: max |logit difference| to float32 is about 0.01 in fp16 and 0.1 in bf16."""
    ids, chunks = _ids(2, 18, seed=24), (12, 1, 1, 1, 1, 1, 1)
    half = copy.deepcopy(_model()).to(dtype)
    cache, reference = MAKERS[kind](6), MAKERS[kind](6)
    got = _stream_logits(half, ids, chunks, cache)
    expected = _stream_logits(_model(), ids, chunks, reference)
    stored = cache.ring.keys[0] if hasattr(cache, "ring") else cache.keys[0]
    assert stored.dtype == dtype and got.dtype == torch.float32
    assert (got - expected).abs().max() < (0.05 if dtype == torch.float16 else 0.4)


# --- past the trained context (512 positions) ----------------------------------------------------------


def test_sink_cache_runs_past_the_context_without_the_flag_and_sees_only_angles_inside_the_cache(monkeypatch):
    model, ids, S, W = _model(), _ids(1, 530, seed=25), 4, 16
    assert model.allow_long_context is False
    chunks = (500,) + (1,) * 30  # decode at positions 500 .. 529
    cache = SinkKVCache(6, num_sinks=S, window=W)
    largest = []
    original = ForwardBatch.rope

    def spy(self, x, positions):
        largest.append(int(positions.max()))
        return original(self, x, positions)

    got = [model(ids[:, :500], cache=cache)]
    monkeypatch.setattr(ForwardBatch, "rope", spy)
    got += [model(ids[:, p : p + 1], cache=cache) for p in range(500, 530)]
    monkeypatch.undo()
    assert cache.seq_len == 530 and max(largest) == S + W, "a decode step rotates at in-cache 0 .. S + W"
    reference = _Chunked(chunks, lambda idx, seen, _: [p for p in idx if p < S or p >= seen - W], True)
    expected = _reference_logits(model, ids, reference)
    torch.testing.assert_close(torch.cat(got, 1), expected, rtol=0, atol=LOGITS_ATOL)
    assert cache.kept_positions(5).tolist() == list(range(S)) + list(range(530 - W, 530))


def test_dense_and_window_caches_are_refused_past_the_context_unless_allowed():
    model, ids, W = _model(), _ids(1, 520, seed=26), 16
    dense, window = NaiveKVCache(6), SlidingWindowKVCache(6, W)
    for cache in (dense, window):
        model(ids[:, :512], cache=cache)
        with pytest.raises(ValueError, match="past the model's context"):
            model(ids[:, 512:513], cache=cache)
        assert cache.seq_len == 512, "a refused forward must store nothing"
    chunks = (512,) + (1,) * 8
    try:
        model.allow_long_context = True
        got = torch.cat([model(ids[:, p : p + 1], cache=window) for p in range(512, 520)], 1)
        expected = _reference_logits(model, ids, _BandMask(_window_lo(chunks, W)))[:, 512:]
    finally:
        model.allow_long_context = False
    torch.testing.assert_close(got, expected, rtol=0, atol=LOGITS_ATOL)


@pytest.mark.parametrize("S,W", [(0, 3), (2, 3), (4, 1)])
def test_sink_positions_are_what_the_cache_returns_and_rope_numbers_them_inside_the_cache(S, W):
    """Drive a SinkKVCache whose keys carry their stream position; sink_positions must name them."""
    cache = SinkKVCache(1, num_sinks=S, window=W)
    seen = 0
    for T in [1, 2, 1, 5, 1, 1, 3, 1]:
        stream, rope = evict.sink_positions(seen, T, S, W)
        marked = torch.arange(seen, seen + T, dtype=torch.float32).view(1, 1, T, 1)
        keys, _ = cache.update(0, marked, marked)
        assert stream.dtype == rope.dtype == torch.long
        assert stream.tolist() == keys.view(-1).long().tolist()
        assert rope.tolist() == list(range(keys.shape[2]))
        seen += T
        assert cache.kept_positions(0).tolist() == evict.sink_positions(seen, 0, S, W)[0].tolist()


def test_sink_positions_rejects_bad_arguments():
    for args, word in [
        ((-1, 1, 1, 1), "seen"),
        ((0, 1.0, 1, 1), "new_tokens"),
        ((0, 1, -1, 1), "num_sinks"),
        ((0, 1, 1, 0), "window"),
    ]:
        with pytest.raises((TypeError, ValueError), match=word):
            evict.sink_positions(*args)


def test_generate_runs_a_sink_cache_past_the_context_without_the_flag_and_refuses_the_others():
    """kvlib.generate checks positions up front: a sink cache numbers them inside the cache, so only its
    prefill has to fit; a window cache's absolute positions still have to."""
    from kvlib.generate import generate

    model, prompt = _model(), _ids(1, 8, seed=27)
    assert model.allow_long_context is False
    got = generate(model, prompt, 520, SinkKVCache(6, num_sinks=4, window=12))
    try:
        model.allow_long_context = True
        expected = generate(model, prompt, 520, SinkKVCache(6, num_sinks=4, window=12))
    finally:
        model.allow_long_context = False
    assert torch.equal(got, expected)
    with pytest.raises(ValueError, match="past the model's context"):
        generate(model, prompt, 520, SlidingWindowKVCache(6, 16))
    with pytest.raises(ValueError, match="a prompt of 513 tokens"):
        generate(model, _ids(1, 513, seed=28), 2, SinkKVCache(6, num_sinks=4, window=12))
