"""Bad input to the evicting caches (kvlib.cache.evict): each mistake ends in one line naming the argument,
what was expected and what was given, and leaves the cache as it was, so that the next valid call gives
exactly what a cache that never saw the mistake gives.
"""

from __future__ import annotations

import math

import pytest
import torch
from bad_input import Case, assert_clear_error, params

from kvlib.cache.evict import H2OKVCache, SinkKVCache, SlidingWindowKVCache

pytestmark = pytest.mark.ch05

B, KV, H, D = 2, 2, 8, 4
MAKERS = {
    "window": lambda: SlidingWindowKVCache(2, 4),
    "sinks": lambda: SinkKVCache(2, num_sinks=2, window=4),
    "h2o": lambda: H2OKVCache(2, heavy=2, recent=2, num_sinks=1),
}


def kv(
    b: int = B, heads: int = KV, T: int = 1, d: int = D, dtype: torch.dtype = torch.float32, seed: int = 0
):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, heads, T, d, generator=g).to(dtype), torch.randn(b, heads, T, d, generator=g).to(
        dtype
    )


def weights(T: int, n: int, b: int = B, heads: int = H, seed: int = 0) -> torch.Tensor:
    """Causal softmax weights [b, heads, T, n] of T new queries over n keys."""
    future = torch.arange(n) > torch.arange(n - T, n)[:, None]
    logits = 4 * torch.randn(b, heads, T, n, generator=torch.Generator().manual_seed(seed))
    return logits.masked_fill(future, -math.inf).softmax(-1)


def started(kind: str, tokens: int = 6):
    """A cache of both layers after ``tokens`` tokens (prefill 3, then decode), fp32, [2, 2, T, 4]."""
    cache = MAKERS[kind]()
    chunks = [min(3, tokens)] + [1] * max(0, tokens - 3)
    for i, T in enumerate(chunks):
        for layer in range(2):
            keys, _ = cache.update(layer, *kv(T=T, seed=10 * i + layer))
            if kind == "h2o":
                cache.observe_attention(layer, weights(T, keys.shape[2], seed=10 * i + layer))
    return cache


def h2o_pending():
    """An H2O cache whose layer 0 got 3 tokens and waits for observe_attention (kept = 3)."""
    cache = H2OKVCache(2, heavy=2, recent=2)
    cache.update(0, *kv(T=3))
    return cache


# --- constructors --------------------------------------------------------------------------------------

CONSTRUCTOR_CASES = [
    Case("window-0", lambda: SlidingWindowKVCache(2, 0), ValueError, ("window", ">= 1", "0")),
    Case("window-negative", lambda: SlidingWindowKVCache(2, -3), ValueError, ("window", ">= 1", "-3")),
    Case("window-float", lambda: SlidingWindowKVCache(2, 4.0), TypeError, ("window", "integer", "float")),
    Case("window-bool", lambda: SlidingWindowKVCache(2, True), TypeError, ("window", "integer", "bool")),
    Case("window-str", lambda: SlidingWindowKVCache(2, "4"), TypeError, ("window", "integer", "str")),
    Case("window-none", lambda: SlidingWindowKVCache(2, None), TypeError, ("window", "integer")),
    Case("window-layers-0", lambda: SlidingWindowKVCache(0, 4), ValueError, ("num_layers", ">= 1")),
    Case("window-layers-float", lambda: SlidingWindowKVCache(2.0, 4), TypeError, ("num_layers", "float")),
    Case("sinks-negative", lambda: SinkKVCache(2, -1, 4), ValueError, ("num_sinks", ">= 0", "-1")),
    Case("sinks-bool", lambda: SinkKVCache(2, True, 4), TypeError, ("num_sinks", "bool")),
    Case("sinks-float", lambda: SinkKVCache(2, 2.0, 4), TypeError, ("num_sinks", "float")),
    Case("sinks-window-0", lambda: SinkKVCache(2, 2, 0), ValueError, ("window", ">= 1")),
    Case("sinks-window-bool", lambda: SinkKVCache(2, 2, False), TypeError, ("window", "bool")),
    Case("sinks-layers-bool", lambda: SinkKVCache(True, 2, 4), TypeError, ("num_layers", "bool")),
    Case("h2o-heavy-negative", lambda: H2OKVCache(2, -1, 2), ValueError, ("heavy", ">= 0", "-1")),
    Case("h2o-heavy-float", lambda: H2OKVCache(2, 2.5, 2), TypeError, ("heavy", "float")),
    Case("h2o-heavy-bool", lambda: H2OKVCache(2, True, 2), TypeError, ("heavy", "bool")),
    Case("h2o-recent-0", lambda: H2OKVCache(2, 2, 0), ValueError, ("recent", ">= 1", "0")),
    Case("h2o-recent-float", lambda: H2OKVCache(2, 2, 1.0), TypeError, ("recent", "float")),
    Case("h2o-sinks-negative", lambda: H2OKVCache(2, 2, 2, num_sinks=-2), ValueError, ("num_sinks", ">= 0")),
    Case("h2o-sinks-bool", lambda: H2OKVCache(2, 2, 2, num_sinks=True), TypeError, ("num_sinks", "bool")),
    Case("h2o-layers-0", lambda: H2OKVCache(0, 2, 2), ValueError, ("num_layers", ">= 1")),
]


@pytest.mark.parametrize("case", params(CONSTRUCTOR_CASES))
def test_constructor_refuses_bad_sizes(case):
    assert_clear_error(case)


# --- update: arguments wrong on their own ---------------------------------------------------------------


def _update_cases(kind: str) -> list[Case]:
    k, v = kv(T=2)

    def call(*args):
        return lambda: MAKERS[kind]().update(*args)

    return [
        Case(f"{kind}-layer-too-big", call(2, k, v), IndexError, ("layer", "[0, 2)", "2")),
        Case(f"{kind}-layer-negative", call(-1, k, v), IndexError, ("layer", "[0, 2)", "-1")),
        Case(f"{kind}-layer-bool", call(True, k, v), TypeError, ("layer", "integer", "bool")),
        Case(f"{kind}-layer-float", call(0.0, k, v), TypeError, ("layer", "integer", "float")),
        Case(f"{kind}-layer-str", call("0", k, v), TypeError, ("layer", "integer", "str")),
        Case(f"{kind}-k-list", call(0, k.tolist(), v), TypeError, ("k", "torch.Tensor", "list")),
        Case(f"{kind}-v-none", call(0, k, None), TypeError, ("v", "torch.Tensor", "None")),
        Case(f"{kind}-k-3d", call(0, k[0], v[0]), ValueError, ("k", "4 dims", "[2, 2, 4]")),
        Case(f"{kind}-v-5d", call(0, k, v[None]), ValueError, ("v", "4 dims", "[1, 2, 2, 2, 4]")),
        Case(
            f"{kind}-kv-shape", call(0, k, v[:, :, :1]), ValueError, ("k and v", "same shape", "[2, 2, 1, 4]")
        ),
        Case(f"{kind}-kv-head-dim", call(0, k, kv(d=6, T=2)[1]), ValueError, ("k and v", "same shape")),
        Case(f"{kind}-kv-dtype", call(0, k, v.half()), ValueError, ("k and v", "dtype", "torch.float16")),
    ]


UPDATE_CASES = [case for kind in MAKERS for case in _update_cases(kind)]


@pytest.mark.parametrize("case", params(UPDATE_CASES))
def test_update_refuses_bad_arguments(case):
    assert_clear_error(case)


# --- update: a later call that changes what the cache holds ---------------------------------------------

CHANGES = {  # what a later update changes -> (its k, v), the words the message must contain
    "batch": (lambda: kv(b=3), ("batch", "3", "2")),
    "num_kv_heads": (lambda: kv(heads=1), ("num_kv_heads", "1", "2")),
    "head_dim": (lambda: kv(d=8), ("head_dim", "8", "4")),
    "dtype": (lambda: kv(dtype=torch.float16), ("torch.float32", "torch.float16")),
    "dtype-bf16": (lambda: kv(dtype=torch.bfloat16), ("torch.float32", "torch.bfloat16")),
}


def _state(cache) -> tuple:
    return (
        cache.seq_len,
        cache.nbytes(),
        [cache.kv_length_after(layer, 1) for layer in range(2)],
        [cache.kept_positions(layer).tolist() for layer in range(2)],
    )


@pytest.mark.parametrize("tokens", [1, 6], ids=["after-1-token", "after-6-tokens"])
@pytest.mark.parametrize("change", CHANGES)
@pytest.mark.parametrize("kind", MAKERS)
def test_a_later_update_that_changes_the_sequence_is_refused_and_changes_nothing(kind, change, tokens):
    """tokens=1: a sink cache has only its sink buffer yet; 6: every buffer is allocated and evicting."""
    cache, twin = started(kind, tokens), started(kind, tokens)
    new, mentions = CHANGES[change]
    before = _state(cache)
    error = assert_clear_error(Case(change, lambda: cache.update(1, *new()), ValueError, mentions))
    advice = "convert before calling update" if change.startswith("dtype") else "reset()"
    assert advice in str(error), f"the message should say what to do: {advice}"
    assert _state(cache) == before, "a refused update must leave the cache as it was"
    for layer in range(2):  # the next valid update gives what a cache that never saw the mistake gives
        got, want = cache.update(layer, *kv(seed=99)), twin.update(layer, *kv(seed=99))
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        if kind == "h2o":
            w = weights(1, got[0].shape[2], seed=7)
            cache.observe_attention(layer, w)
            twin.observe_attention(layer, w)
    assert _state(cache) == _state(twin)


@pytest.mark.parametrize("kind", MAKERS)
def test_reset_lets_a_different_sequence_in(kind):
    cache = started(kind)
    cache.reset()
    keys, values = cache.update(0, *kv(b=3, heads=1, d=8, dtype=torch.float16, T=2))
    assert keys.shape == (3, 1, 2, 8) and keys.dtype == torch.float16 and cache.seq_len == 2


# --- queries about a layer -----------------------------------------------------------------------------


def _layer_query_cases(kind: str) -> list[Case]:
    return [
        Case(
            f"{kind}-kept-positions-2",
            lambda: started(kind).kept_positions(2),
            IndexError,
            ("layer", "[0, 2)"),
        ),
        Case(
            f"{kind}-kept-positions-neg",
            lambda: started(kind).kept_positions(-1),
            IndexError,
            ("layer", "-1"),
        ),
        Case(
            f"{kind}-kept-positions-bool",
            lambda: started(kind).kept_positions(False),
            TypeError,
            ("layer", "bool"),
        ),
        Case(
            f"{kind}-kept-positions-float",
            lambda: started(kind).kept_positions(1.0),
            TypeError,
            ("layer", "float"),
        ),
    ]


@pytest.mark.parametrize("case", params([case for kind in MAKERS for case in _layer_query_cases(kind)]))
def test_kept_positions_refuses_a_bad_layer(case):
    assert_clear_error(case)


@pytest.mark.parametrize("kind", MAKERS)
@pytest.mark.parametrize("layer", [-1, 2], ids=["negative", "too-big"])
def test_kv_length_after_refuses_a_bad_layer(kind, layer):
    """kv_length_after(-1, n) silently answers for the last layer; kv_length_after(2, n) raises a bare
    ``IndexError: list index out of range`` that names no argument."""
    assert_clear_error(
        Case("kv-length-after", lambda: started(kind).kv_length_after(layer, 1), IndexError, ("layer",))
    )


@pytest.mark.parametrize("kind", MAKERS)
@pytest.mark.parametrize("new_tokens", [-3, 1.5, True], ids=["negative", "float", "bool"])
def test_kv_length_after_refuses_a_bad_token_count(kind, new_tokens):
    cache = started(kind)
    with pytest.raises((TypeError, ValueError), match="new_tokens"):
        cache.kv_length_after(0, new_tokens)


# --- H2O: observe_attention ---------------------------------------------------------------------------

OBSERVE_CASES = [
    Case(
        "layer-too-big",
        lambda: h2o_pending().observe_attention(2, weights(3, 3)),
        IndexError,
        ("layer", "[0, 2)"),
    ),
    Case(
        "layer-bool",
        lambda: h2o_pending().observe_attention(False, weights(3, 3)),
        TypeError,
        ("layer", "bool"),
    ),
    Case(
        "not-a-tensor",
        lambda: h2o_pending().observe_attention(0, weights(3, 3).tolist()),
        TypeError,
        ("weights", "torch.Tensor", "list"),
    ),
    Case(
        "3d", lambda: h2o_pending().observe_attention(0, weights(3, 3)[0]), ValueError, ("weights", "4 dims")
    ),
    Case(
        "wrong-batch",
        lambda: h2o_pending().observe_attention(0, weights(3, 3, b=3)),
        ValueError,
        ("weights", "B=2", "[3, 8, 3, 3]"),
    ),
    Case(
        "wrong-kept",
        lambda: h2o_pending().observe_attention(0, weights(3, 4)),
        ValueError,
        ("weights", "kept=3", "[2, 8, 3, 4]"),
    ),
    Case(
        "heads-not-a-multiple",
        lambda: h2o_pending().observe_attention(0, weights(3, 3, heads=3)),
        ValueError,
        ("weights", "multiple of 2", "[2, 3, 3, 3]"),
    ),
    Case(
        "before-any-update",
        lambda: H2OKVCache(2, 2, 2).observe_attention(0, weights(1, 1)),
        RuntimeError,
        ("observe_attention", "layer 0", "without an update"),
    ),
    Case(
        "other-layer-not-updated",
        lambda: h2o_pending().observe_attention(1, weights(3, 3)),
        RuntimeError,
        ("layer 1", "without an update"),
    ),
]


@pytest.mark.parametrize("case", params(OBSERVE_CASES))
def test_observe_attention_refuses_bad_weights_and_leaves_the_cache_waiting(case):
    assert_clear_error(case)


@pytest.mark.parametrize("bad", ["wrong-kept", "wrong-batch", "heads", "3d", "layer"])
def test_a_refused_observe_changes_nothing(bad):
    cache, twin = h2o_pending(), h2o_pending()
    wrong = {
        "wrong-kept": (0, weights(3, 4)),
        "wrong-batch": (0, weights(3, 3, b=1)),
        "heads": (0, weights(3, 3, heads=5)),
        "3d": (0, weights(3, 3)[0]),
        "layer": (1, weights(3, 3)),
    }[bad]
    with pytest.raises((ValueError, RuntimeError, TypeError, IndexError)):
        cache.observe_attention(*wrong)
    with pytest.raises(RuntimeError, match="without observe_attention"):  # still waiting for its weights
        cache.update(0, *kv(seed=5))
    for c in (cache, twin):
        c.observe_attention(0, weights(3, 3, seed=4))
    for step in range(4):  # and it then evicts exactly as the twin does
        for c in (cache, twin):
            keys, _ = c.update(0, *kv(seed=step))
            c.observe_attention(0, weights(1, keys.shape[2], seed=step))
        assert torch.equal(cache.kept_positions(0), twin.kept_positions(0))
    assert cache.nbytes() == twin.nbytes() and cache.seq_len == twin.seq_len == 7


def test_observe_twice_is_refused():
    cache = h2o_pending()
    cache.observe_attention(0, weights(3, 3))
    assert_clear_error(
        Case("twice", lambda: cache.observe_attention(0, weights(3, 3)), RuntimeError, ("without an update",))
    )


@pytest.mark.parametrize("T", [2, 5])
def test_observe_attention_refuses_weights_for_another_number_of_new_queries(T):
    """The docstring asks for [B, H, T_new, kept]; after an update of 3 tokens, weights of 2 or 5 queries
    are silently summed into the scores."""
    cache = h2o_pending()
    call = lambda: cache.observe_attention(0, torch.full((B, H, T, 3), 1 / 3))  # noqa: E731
    assert_clear_error(Case(f"T={T}", call, ValueError, ("T_new", "3")))


def test_h2o_update_twice_names_the_way_out():
    cache = h2o_pending()
    assert_clear_error(
        Case(
            "twice",
            lambda: cache.update(0, *kv()),
            RuntimeError,
            ("twice", "layer 0", "observe_attention", "attend"),
        )
    )
    assert cache.seq_len == 3 and cache.kv_length_after(0, 0) == 3
