"""Exercise `sink_positions`: the stream and RoPE positions of the keys a sink cache hands to attention.

Every answer is checked by value, twice over: against kvlib's `sink_positions` on a sweep of every regime
the docstring separates (seen below num_sinks, the window still filling, eviction running; num_sinks 0,
new_tokens 0, window 1; streams far past any visible length), and against a real `SinkKVCache` driven with
keys that carry their own stream position, so `stream` must name exactly the keys `update` returns (batch
2, two KV heads, a prefill, single tokens and chunks that cross the sinks' and the window's ends).

Both outputs must be torch.long [n] (a list, int32, or the float32 that `torch.tensor([])` gives for an
empty cache fail with the fix), with no position twice. A wrong answer is matched against the classic
mistakes, which the message names: rope equal to stream (rotating at stream positions is what caching
rotated keys amounts to), the sinks counted again in the window, the sinks not clamped to what was seen,
the window one token too long, short or shifted, the new tokens missing, evicted before the call, or
numbered from 0 / at their stream positions, nothing evicted at all. A returned tensor must not change
when the function is called again.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import torch

from ..common import CheckFailed, call, expect
from ..delegation import graded
from ..properties import assert_unchanged, snapshot

# kvlib's function has the exercise's signature; SinkKVCache.kept_positions hands in the kept part too.
REFERENCES = ("kvlib.cache.evict.sink_positions", "kvlib.cache.evict.SinkKVCache")

_SHOW = 16  # positions shown in a message when a case is this small


def _reference(seen: int, new: int, num_sinks: int, window: int) -> list[int]:
    """The stream positions, written from the docstring (kvlib's function is checked against it too)."""
    recent = min(max(seen - num_sinks, 0), window)
    return list(range(min(seen, num_sinks))) + list(range(seen - recent, seen + new))


def _stream_variants(seen: int, new: int, num_sinks: int, window: int) -> dict[str, list[int]]:
    """Classic wrong stream positions, each with the message that names it."""
    sinks = list(range(min(seen, num_sinks)))
    recent = min(max(seen - num_sinks, 0), window)
    fresh = list(range(seen, seen + new))

    def last(count: int, end: int = seen) -> list[int]:
        count = max(0, min(count, end - len(sinks)))
        return list(range(end - count, end))

    window_of_all = list(range(max(0, seen - window), seen))
    return {
        "the sinks are counted again in the window: the window is the last min(seen - num_sinks, window) of "
        "the tokens AFTER the sinks (recent = min(max(seen - num_sinks, 0), window)), not the last "
        "min(seen, window) of all seen tokens; while seen < num_sinks + window a sink appears twice": (
            sinks + window_of_all + fresh
        ),
        "sinks past what was seen: the sinks are the first min(seen, num_sinks) tokens, so while seen < "
        "num_sinks only the seen tokens are sinks (range(num_sinks) names tokens that do not exist yet)": (
            list(range(num_sinks)) + list(range(seen - recent, seen)) + fresh
        ),
        "the window holds one token too many: keep the last min(seen - num_sinks, window) other tokens, "
        "not window + 1 (off by one)": sinks + last(min(max(seen - num_sinks, 0), window + 1)) + fresh,
        "the window holds one token too few: keep the last min(seen - num_sinks, window) other tokens, "
        "window of them once the stream is long enough (off by one)": (
            sinks + last(min(max(seen - num_sinks, 0), window - 1)) + fresh
        ),
        "the window is shifted by one (off by one): it ends at the last seen token, seen - 1, so it is "
        "range(seen - recent, seen)": sinks + [p - 1 for p in range(seen - recent, seen)] + fresh,
        "the new tokens are missing: update returns the kept keys AND the new_tokens new ones, at stream "
        "positions seen .. seen + new_tokens - 1": sinks + list(range(seen - recent, seen)),
        "the new tokens were added before evicting: the cache returns the keys it kept from the seen tokens "
        "and then ALL new_tokens new ones (eviction of this call's tokens happens afterwards)": (
            _reference(seen + new, 0, num_sinks, window)
        ),
        "nothing is evicted: past num_sinks + window seen tokens the cache keeps only the sinks and the last "
        "window of the others": list(range(seen + new)),
        "the sinks are missing: the cache keeps the stream's first min(seen, num_sinks) tokens before the "
        "window": window_of_all + fresh,
        "the order is wrong: sinks first, then the window, then the new tokens": (
            list(range(seen - recent, seen)) + sinks + fresh
        ),
    }


def _rope_variants(stream: list[int], new: int) -> dict[str, list[int]]:
    n, kept = len(stream), len(stream) - new
    return {
        "rope equals stream: rotating each key at its stream position is exactly what caching rotated keys "
        "amounts to (the classic bug: a gap after the sinks and angles that grow past the trained "
        "context). A sink cache rotates each key at its index in the cache, 0 .. n-1": stream,
        "the new tokens (where the queries sit) are rotated at their stream positions: the queries take the "
        "last new_tokens of 0 .. n-1, so rope is 0 .. n-1 for every key, new ones included": list(range(kept))
        + stream[kept:],
        "the new tokens' rope positions restart at 0: they continue after the kept keys (the queries take "
        "the last new_tokens of 0 .. n-1)": list(range(kept)) + list(range(new)),
        "rope starts at 1: a key's index in the cache runs 0 .. n-1": list(range(1, n + 1)),
    }


def _as_positions(value: Any, name: str, what: str) -> torch.Tensor:
    if isinstance(value, (list, tuple)):
        raise CheckFailed(
            f"{what}: {name} must be a torch.long tensor, got a Python {type(value).__name__}: return "
            "torch.tensor(positions, dtype=torch.long) (or build it with torch.arange / torch.cat)"
        )
    if not isinstance(value, torch.Tensor):  # the message is built only on failure: formatting is slow
        raise CheckFailed(
            f"{what}: {name} must be a torch.long tensor, got {type(value).__name__}: {value!r:.60}"
        )
    if value.dtype != torch.long:
        hint = "convert with .long(), or create it with dtype=torch.long"
        if value.dtype == torch.int32:
            hint = "int32 is not torch.long (int64): create it with dtype=torch.long, or .long()"
        elif value.dtype.is_floating_point and value.numel() == 0:
            hint = (
                "torch.tensor([]) of an empty list is float32 whatever the positions would be: pass "
                "dtype=torch.long (an empty cache, seen = new_tokens = 0, has no keys)"
            )
        elif value.dtype.is_floating_point:
            hint = "positions are integers: create the tensor with dtype=torch.long (not float)"
        raise CheckFailed(f"{what}: {name} must be torch.long (int64), got {value.dtype}; {hint}")
    expect(value.dim() == 1, f"{what}: {name} must be 1-d [n], got shape {tuple(value.shape)}")
    return value


def _shown(positions: list[int]) -> str:
    return str(positions) if len(positions) <= _SHOW else f"{len(positions)} positions"


def _check(
    fn: Callable[..., Any],
    seen: int,
    new: int,
    num_sinks: int,
    window: int,
    want: list[int] | None = None,
    source: str = "",
) -> Any:
    """Call the learner's function once and check both outputs; `want` (the stream) defaults to the
    docstring's. Returns the learner's raw result."""
    what = f"sink_positions(seen={seen}, new_tokens={new}, num_sinks={num_sinks}, window={window})"
    out = call(fn, seen, new, num_sinks, window, what="sink_positions")
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise CheckFailed(
            f"{what} must return a tuple (stream, rope) of two tensors, got {type(out).__name__}: {out!r:.80}"
        )
    stream = _as_positions(out[0], "stream", what)
    rope = _as_positions(out[1], "rope", what)
    want = _reference(seen, new, num_sinks, window) if want is None else want
    got = stream.tolist()
    if got != want:
        named = [m for m, v in _stream_variants(seen, new, num_sinks, window).items() if got == v != want]
        if named:  # with one new token, two mistakes can give the same positions: name both
            raise CheckFailed(f"{what}: stream is wrong{source}: " + "; or ".join(named))
        if len(set(got)) < len(got):
            raise CheckFailed(
                f"{what}: stream names a position twice{source} ({_shown(got)}); the cache holds each token "
                "once: the sinks, then the last min(seen - num_sinks, window) of the OTHER seen tokens, then "
                "the new ones"
            )
        raise CheckFailed(
            f"{what}: stream is wrong{source}: expected {_shown(want)}, got {_shown(got)} (the sinks 0 .. "
            "min(seen, num_sinks) - 1, the last min(seen - num_sinks, window) other seen tokens, the new "
            "tokens seen .. seen + new_tokens - 1)"
        )
    n = len(want)
    expect(
        tuple(rope.shape) == (n,),
        f"{what}: rope must hold one position per key, shape ({n},) like stream, got {tuple(rope.shape)}",
    )
    got_rope, want_rope = rope.tolist(), list(range(n))
    if got_rope != want_rope:
        for message, variant in _rope_variants(want, new).items():
            if got_rope == variant:
                raise CheckFailed(f"{what}: rope is wrong: {message}")
        raise CheckFailed(
            f"{what}: rope is wrong: expected each key's index in the cache, 0 .. {n - 1}, "
            f"got {_shown(got_rope)}"
        )
    return out


def _against_cache(
    fn: Callable[..., Any], num_sinks: int, window: int, chunks: list[int], batch: int = 2, kv_heads: int = 2
) -> None:
    """Drive kvlib's SinkKVCache with keys whose first feature is their stream position; before each
    update, the learner's stream must name the keys that update returns, in order."""
    from kvlib.cache.evict import SinkKVCache

    cache = SinkKVCache(1, num_sinks, window)
    seen = 0
    for T in chunks:
        pos = torch.arange(seen, seen + T, dtype=torch.float32)
        k = torch.zeros(batch, kv_heads, T, 2)
        k[..., 0] = pos
        k[..., 1] = torch.arange(batch * kv_heads, dtype=torch.float32).view(batch, kv_heads, 1)
        keys, _ = cache.update(0, k, k + 0.5)
        returned = keys[..., 0].long()  # (B, KV, n): the stream position each returned key carries
        if not bool((returned == returned[:1, :1]).all()):  # every row and head keeps the same tokens
            raise RuntimeError("SinkKVCache returned different tokens for different rows")
        _check(
            fn,
            seen,
            T,
            num_sinks,
            window,
            want=returned[0, 0].tolist(),
            source=f" (SinkKVCache({num_sinks=}, {window=}).update of {T} token(s) after {seen} returns the "
            "keys of other positions)",
        )
        seen += T


@graded("sink_positions", *REFERENCES)
def sink_positions_visible(fn: Callable[..., Any]) -> None:
    _check(fn, 10, 1, 2, 4)  # eviction running: sinks 0, 1, window 6..9, the new token 10
    _check(fn, 3, 2, 4, 8)  # fewer tokens seen than sinks
    _check(fn, 7, 1, 4, 8)  # the window still filling
    _check(fn, 0, 5, 4, 8)  # a prefill into an empty cache
    _check(fn, 30, 3, 4, 8)  # a chunk of 3 after 30 tokens
    _against_cache(fn, 2, 5, [4, 1, 1, 3, 1, 6, 1, 1])  # batch 2, 2 KV heads, past the window
    print("visible tests passed")


SWEEP = [
    (seen, new, sinks, window)
    for seen in range(14)
    for new in (0, 1, 3)
    for sinks in (0, 1, 3)
    for window in (1, 2, 5)
]
LARGE = [
    (100_000, 1, 4, 252),
    (100_000, 16, 4, 4096),
    (1_000_000, 0, 0, 1),
    (5_000, 7, 4, 4_100),  # 5000 tokens seen, still inside sinks + window
    (4_200, 1, 4, 4_196),  # one past sinks + window
    (2_000, 600, 64, 1_500),  # a long chunk after a long stream
]


@graded("sink_positions", *REFERENCES)
def sink_positions_hidden(fn: Callable[..., Any]) -> None:
    for case in SWEEP:  # every regime: seen < sinks, the window filling, evicting; no sinks; no new tokens
        _check(fn, *case)
    for case in LARGE:  # streams past any visible length
        _check(fn, *case)
    rng = random.Random(5)
    for _ in range(60):
        _check(fn, rng.randint(0, 3000), rng.randint(0, 40), rng.randint(0, 16), rng.randint(1, 600))
    for sinks, window, chunks in (
        (4, 3, [1] * 12),  # one token at a time from an empty cache
        (3, 2, [10, 1, 2, 1, 5]),  # a prefill longer than sinks + window
        (0, 1, [3, 1, 1, 2]),  # no sinks, a window of one token
        (5, 4, [2, 2, 1, 4, 1, 1, 7, 1]),  # chunks that cross the end of the sinks and of the window
    ):
        _against_cache(fn, sinks, window, chunks, batch=3, kv_heads=1)
    first = _check(fn, 40, 2, 4, 8)
    copy = snapshot(first)
    _check(fn, 41, 3, 4, 8)
    _check(fn, 600, 5, 4, 300)
    assert_unchanged(
        first,
        copy,
        "sink_positions(40, 2, 4, 8)'s result",
        "return new tensors on every call; never write into a tensor you returned before (a buffer kept "
        "between calls)",
    )
    print("hidden tests passed")
