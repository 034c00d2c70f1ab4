"""Caches with a fixed token budget: they evict old tokens, so memory stays flat as a stream grows.

Three policies, each a :class:`~kvlib.cache.base.KVCache` the model uses through the attention seam:

- :class:`SlidingWindowKVCache` keeps the last ``window`` tokens in a ring buffer (Mistral's sliding
  window, Longformer's local attention). Keys are stored rotated at their absolute positions: RoPE
  makes the score depend only on the distance between query and key, and inside a window every
  distance is one the model saw in training. Once the stream's first tokens leave the window,
  perplexity of many models jumps: they parked attention mass on those tokens (Xiao et al. 2023).
- :class:`SinkKVCache` keeps the first ``num_sinks`` tokens ("attention sinks") plus the last
  ``window`` (StreamingLLM, Xiao et al. 2023). It stores keys *before* RoPE (``rotates_keys``) and
  :func:`kvlib.cache.base.attend` rotates them at their index inside the cache, 0 .. n-1: a stream
  of any length then only ever sees positions below ``num_sinks + window``. Caching rotated keys
  instead and evicting from the middle leaves a gap in the positions the model sees, the classic
  bug chapter 05 asks you to avoid.
- :class:`H2OKVCache` keeps the ``heavy`` tokens that received the most attention so far plus the
  last ``recent`` ones (and optionally ``num_sinks`` first tokens), separately for every KV head
  and batch row (H2O, Zhang et al. 2023). It scores tokens through ``observe_attention``: the
  attention weights of the query heads of each group are summed per key, every step.

Every cache stores the new tokens of a call before evicting, and ``update`` always returns all of
them: a prefill chunk longer than the budget still attends causally over itself, and eviction only
applies to what later calls see. ``seq_len`` counts every token seen, evicted ones included (the
position of the next token), and ``kept_positions(layer)`` says which absolute positions remain.
"""

from __future__ import annotations

from typing import Any

import torch

from kvlib.cache.dense import KV_DIMS, check_appendable, check_layer, check_update_args
from kvlib.validate import require_int, require_tensor

__all__ = [
    "SlidingWindowKVCache",
    "SinkKVCache",
    "H2OKVCache",
    "h2o_accumulate",
    "h2o_keep_mask",
    "ring_order",
    "sink_positions",
]


def _check_length_query(layer: Any, new_tokens: Any, num_layers: int) -> tuple[int, int]:
    return check_layer(layer, num_layers), require_int("new_tokens", new_tokens, minimum=0)


def ring_order(seen: int, capacity: int) -> torch.Tensor:
    """Slots of a ring buffer of ``capacity`` slots holding the last ``min(seen, capacity)`` of ``seen``
    items, oldest first: token p lives in slot ``p % capacity``."""
    kept = min(seen, capacity)
    return torch.arange(seen - kept, seen) % capacity  # (kept,)


def sink_positions(
    seen: int, new_tokens: int, num_sinks: int, window: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the keys of a :class:`SinkKVCache` sit when ``new_tokens`` arrive after ``seen`` tokens.

    ``update`` returns n keys: the stream's first ``min(seen, num_sinks)`` tokens, the last
    ``min(seen - num_sinks, window)`` of the other seen tokens, then the ``new_tokens`` new ones.
    Returns ``(stream, rope)``, both torch.long [n]: each key's position in the stream, and the
    position RoPE rotates it at, its index in the cache (0 .. n-1; the new queries take the last
    ``new_tokens`` of them). Rotating at the stream positions instead (what caching rotated keys
    amounts to) leaves a gap after the sinks and angles that grow past the trained context.
    """
    seen = require_int("seen", seen, minimum=0)
    new_tokens = require_int("new_tokens", new_tokens, minimum=0)
    num_sinks = require_int("num_sinks", num_sinks, minimum=0)
    window = require_int("window", window, minimum=1)
    recent = min(max(0, seen - num_sinks), window)
    stream = torch.cat(
        [torch.arange(min(seen, num_sinks)), torch.arange(seen - recent, seen + new_tokens)]
    )  # (n,)
    return stream, torch.arange(stream.numel())


class _RingLayers:
    """The last ``capacity`` tokens of each layer in a ring buffer [B, KV, capacity, D] per layer (K and V).

    ``append(layer, k, v, first)`` stores tokens whose stream index starts at ``first``; ``read(layer,
    seen)`` returns the kept ones oldest first. Buffers are allocated on a layer's first append, with
    the batch, heads, head_dim, dtype and device of that append, which later appends must keep.
    """

    def __init__(self, num_layers: int, capacity: int) -> None:
        self.capacity = capacity
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers

    def check(self, layer: int, k: torch.Tensor, what: str) -> None:
        stored = self.keys[layer]
        if stored is not None:
            check_appendable(what, stored, k, 2, KV_DIMS)

    def read(self, layer: int, seen: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.keys[layer] is None or seen <= 0:
            return None
        slots = ring_order(seen, self.capacity).to(self.keys[layer].device)
        return self.keys[layer][:, :, slots], self.values[layer][:, :, slots]  # (B, KV, kept, D) copies

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor, first: int) -> None:
        """Write tokens ``first .. first + T - 1`` (only the last ``capacity`` of them can survive)."""
        if self.capacity == 0 or k.shape[2] == 0:
            return
        if self.keys[layer] is None:
            B, KV, _, D = k.shape
            self.keys[layer] = k.new_zeros(B, KV, self.capacity, D)
            self.values[layer] = v.new_zeros(B, KV, self.capacity, D)
        T = k.shape[2]
        keep = min(T, self.capacity)
        slots = (torch.arange(first + T - keep, first + T) % self.capacity).to(k.device)
        self.keys[layer][:, :, slots] = k[:, :, T - keep :]
        self.values[layer][:, :, slots] = v[:, :, T - keep :]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.keys + self.values if t is not None)


class SlidingWindowKVCache:
    """The last ``window`` tokens of every layer, in a ring buffer: memory fixed at ``window`` tokens.

    ``update(layer, k, v)`` returns the kept tokens (oldest first) followed by all new ones, then keeps
    the last ``window``. Token p sits in slot ``p % window``, so a decode step overwrites one slot and
    copies nothing else. Keys arrive rotated by RoPE at their absolute positions and stay so.
    """

    def __init__(self, num_layers: int, window: int) -> None:
        self.num_layers = require_int("num_layers", num_layers, minimum=1)
        self.window = require_int("window", window, minimum=1)
        self.ring = _RingLayers(self.num_layers, self.window)
        self.seen = [0] * self.num_layers

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        layer = check_update_args(layer, k, v, self.num_layers)
        self.ring.check(layer, k, f"layer {layer} k")
        old = self.ring.read(layer, self.seen[layer])
        keys, values = (k, v) if old is None else (torch.cat([old[0], k], 2), torch.cat([old[1], v], 2))
        self.ring.append(layer, k, v, self.seen[layer])
        self.seen[layer] += k.shape[2]
        return keys, values  # (B, KV, min(seen, window) + T_new, D)

    def kv_length_after(self, layer: int, new_tokens: int) -> int:
        """How many keys ``update`` returns when it gets ``new_tokens`` more (for :mod:`kvlib.hf`)."""
        layer, new_tokens = _check_length_query(layer, new_tokens, self.num_layers)
        return min(self.seen[layer], self.window) + new_tokens

    def kept_positions(self, layer: int) -> torch.Tensor:
        """Absolute positions of the tokens ``layer`` keeps, oldest first: [kept] (torch.long)."""
        seen = self.seen[check_layer(layer, self.num_layers)]
        return torch.arange(seen - min(seen, self.window), seen)

    @property
    def seq_len(self) -> int:
        """Tokens seen by layer 0, evicted ones included: the position of the next token."""
        return self.seen[0]

    def reset(self) -> None:
        self.ring = _RingLayers(self.num_layers, self.window)
        self.seen = [0] * self.num_layers

    def nbytes(self) -> int:
        """Bytes of the ring buffers: fixed at ``window`` tokens per layer once the first update ran."""
        return self.ring.nbytes()


class SinkKVCache:
    """StreamingLLM: the first ``num_sinks`` tokens and the last ``window``, keys stored before RoPE.

    ``rotates_keys = True``: the model hands ``update`` keys (and the seam queries) before RoPE, and
    :func:`kvlib.cache.base.attend` rotates what ``update`` returns at positions ``0 .. n-1`` (the
    index inside the cache) and the new queries at the last ``T_new`` of them. So the stream can run
    far past the trained context while every angle the model sees stays below ``num_sinks + window``.
    """

    rotates_keys = True

    def __init__(self, num_layers: int, num_sinks: int, window: int) -> None:
        self.num_layers = require_int("num_layers", num_layers, minimum=1)
        self.num_sinks = require_int("num_sinks", num_sinks, minimum=0)
        self.window = require_int("window", window, minimum=1)
        self.sinks = _RingLayers(self.num_layers, self.num_sinks)  # never wraps: the first S tokens
        self.ring = _RingLayers(self.num_layers, self.window)
        self.seen = [0] * self.num_layers

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store pre-RoPE ``k``, ``v`` [B, KV, T_new, D]; return sinks, window and the new tokens, in
        stream order (pre-RoPE keys)."""
        layer = check_update_args(layer, k, v, self.num_layers)
        self.sinks.check(layer, k, f"layer {layer} k")
        self.ring.check(layer, k, f"layer {layer} k")
        seen, S = self.seen[layer], self.num_sinks
        parts = [p for p in (self.sinks.read(layer, min(seen, S)), self.ring.read(layer, seen - S)) if p]
        keys = torch.cat([p[0] for p in parts] + [k], 2)  # (B, KV, kept + T_new, D)
        values = torch.cat([p[1] for p in parts] + [v], 2)
        to_sinks = max(0, min(S - seen, k.shape[2]))  # the stream's first S tokens become the sinks
        self.sinks.append(layer, k[:, :, :to_sinks], v[:, :, :to_sinks], seen)
        self.ring.append(layer, k[:, :, to_sinks:], v[:, :, to_sinks:], max(0, seen - S))
        self.seen[layer] += k.shape[2]
        return keys, values

    def _kept(self, seen: int) -> int:
        return min(seen, self.num_sinks) + min(max(0, seen - self.num_sinks), self.window)

    def kv_length_after(self, layer: int, new_tokens: int) -> int:
        layer, new_tokens = _check_length_query(layer, new_tokens, self.num_layers)
        return self._kept(self.seen[layer]) + new_tokens

    def kept_positions(self, layer: int) -> torch.Tensor:
        """Absolute stream positions of the kept tokens, in cache order: [kept] (torch.long)."""
        seen = self.seen[check_layer(layer, self.num_layers)]
        return sink_positions(seen, 0, self.num_sinks, self.window)[0]

    @property
    def seq_len(self) -> int:
        return self.seen[0]

    def reset(self) -> None:
        self.sinks = _RingLayers(self.num_layers, self.num_sinks)
        self.ring = _RingLayers(self.num_layers, self.window)
        self.seen = [0] * self.num_layers

    def nbytes(self) -> int:
        return self.sinks.nbytes() + self.ring.nbytes()


def h2o_accumulate(scores: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """H2O's score update: ``scores`` [B, KV, n] (float32) plus the attention each of the n keys received
    from ``weights`` [B, H, T, n] (softmax rows of the T new queries), summed over the queries and over
    the ``H // KV`` query heads that share a KV head (heads ``g*G .. g*G+G-1`` read KV head g). Returns
    a new tensor; neither input is modified."""
    B, KV, n = scores.shape
    grouped = weights.float().view(B, KV, weights.shape[1] // KV, weights.shape[2], n)  # (B, KV, G, T, n)
    return scores + grouped.sum(dim=(2, 3))


def h2o_keep_mask(
    scores: torch.Tensor, positions: torch.Tensor, seen: int, num_sinks: int, heavy: int, recent: int
) -> torch.Tensor:
    """Which tokens H2O keeps: [B, KV, n] bool for ``scores`` and stream ``positions`` [B, KV, n] of the
    tokens held after ``seen`` tokens. Always kept: positions below ``num_sinks`` and the last ``recent``
    (positions ``>= seen - recent``); of the others, the ``heavy`` with the highest scores (all of them if
    there are fewer; a tie keeps the earlier token). On a cache's own states, where every sink and every
    recent position is held, that is ``num_sinks + heavy + recent`` tokens once more are held."""
    protected = (positions < num_sinks) | (positions >= seen - recent)
    by_score = torch.argsort(scores, dim=-1, descending=True, stable=True)  # ties: earlier index first
    # a second stable sort puts the protected last and keeps the score order among the others
    order = by_score.gather(
        -1, torch.argsort(protected.gather(-1, by_score).to(torch.uint8), dim=-1, stable=True)
    )
    rank = torch.empty_like(order).scatter_(
        -1, order, torch.arange(order.shape[-1], device=order.device).expand_as(order)
    )
    # the first `heavy` places of `order` hold unprotected tokens (as many of them as there are)
    return protected | (rank < heavy)


class H2OKVCache:
    """Heavy hitters + recent window (H2O): per KV head, keep the tokens with the most attention so far.

    Budget per layer, batch row and KV head: ``num_sinks + heavy + recent`` tokens. ``update`` appends
    the new tokens and returns everything kept; the seam then hands the softmax weights
    [B, H, T_new, kept] to ``observe_attention``, which adds each key's column sum over the new queries
    and over the query heads of its group to that key's score, and evicts down to the budget. The first
    ``num_sinks`` tokens of the stream and the last ``recent`` are never evicted; among the others the
    ``heavy`` highest scores stay (a tie keeps the earlier token). Rows and heads keep different tokens,
    each in stream order. Keys stay rotated at their absolute positions.

    Scores come only from ``observe_attention``: a second ``update`` of a layer before its weights were
    observed raises, since eviction would otherwise never run and memory would grow unnoticed.
    """

    def __init__(self, num_layers: int, heavy: int, recent: int, num_sinks: int = 0) -> None:
        self.num_layers = require_int("num_layers", num_layers, minimum=1)
        self.heavy = require_int("heavy", heavy, minimum=0)
        self.recent = require_int("recent", recent, minimum=1)
        self.num_sinks = require_int("num_sinks", num_sinks, minimum=0)
        self.reset()

    @property
    def budget(self) -> int:
        return self.num_sinks + self.heavy + self.recent

    def reset(self) -> None:
        n = self.num_layers
        self.keys: list[torch.Tensor | None] = [None] * n  # (B, KV, kept, D)
        self.values: list[torch.Tensor | None] = [None] * n
        self.scores: list[torch.Tensor | None] = [None] * n  # (B, KV, kept) float32: attention received
        self.positions: list[torch.Tensor | None] = [None] * n  # (B, KV, kept) long: stream positions
        self.seen = [0] * n
        self.pending = [False] * n  # updated, weights not yet observed
        self.pending_tokens = [0] * n  # new tokens of that update: the weights' query rows

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        layer = check_update_args(layer, k, v, self.num_layers)
        if self.pending[layer]:
            raise RuntimeError(
                f"H2OKVCache.update was called twice for layer {layer} without observe_attention in between: "
                "its scores come from the attention weights, so use it through kvlib.cache.base.attend (the "
                "model does) or kvlib.hf.as_hf_cache(cache, model.config, model=model)"
            )
        B, KV, T, _ = k.shape
        new_pos = (
            torch.arange(self.seen[layer], self.seen[layer] + T, device=k.device)
            .expand(B, KV, T)
            .contiguous()
        )
        new_scores = torch.zeros(B, KV, T, device=k.device)
        if self.keys[layer] is None:
            self.keys[layer], self.values[layer] = k, v
            self.scores[layer], self.positions[layer] = new_scores, new_pos
        else:
            check_appendable(f"layer {layer} k", self.keys[layer], k, 2, KV_DIMS)
            self.keys[layer] = torch.cat([self.keys[layer], k], 2)
            self.values[layer] = torch.cat([self.values[layer], v], 2)
            self.scores[layer] = torch.cat([self.scores[layer], new_scores], 2)
            self.positions[layer] = torch.cat([self.positions[layer], new_pos], 2)
        self.seen[layer] += T
        self.pending[layer] = True
        self.pending_tokens[layer] = T
        return self.keys[layer], self.values[layer]

    def observe_attention(self, layer: int, weights: torch.Tensor) -> None:
        """Add the attention each kept key received ([B, H, T_new, kept] softmax weights) to its score,
        summed over the new queries and the query heads sharing its KV head; then evict to the budget."""
        layer = check_layer(layer, self.num_layers)
        keys = self.keys[layer]
        if keys is None or not self.pending[layer]:
            raise RuntimeError(f"observe_attention for layer {layer} without an update before it")
        B, KV, kept, _ = keys.shape
        require_tensor("weights", weights, 4, "[B, num_heads, T_new, kept]")
        T_new = self.pending_tokens[layer]
        if (
            weights.shape[0] != B
            or weights.shape[2] != T_new
            or weights.shape[-1] != kept
            or weights.shape[1] % KV
        ):
            raise ValueError(
                f"weights must be [B={B}, num_heads (a multiple of {KV}), T_new={T_new}, kept={kept}], "
                f"got {list(weights.shape)}"
            )
        self.scores[layer] = h2o_accumulate(self.scores[layer], weights)
        self.pending[layer] = False
        self._evict(layer)

    def keep_mask(self, layer: int) -> torch.Tensor:
        """Which of ``layer``'s tokens the budget keeps: [B, KV, kept] bool (sinks, recent, top scores)."""
        return h2o_keep_mask(
            self.scores[layer],
            self.positions[layer],
            self.seen[layer],
            self.num_sinks,
            self.heavy,
            self.recent,
        )

    def _evict(self, layer: int) -> None:
        if self.keys[layer].shape[2] <= self.budget:
            return
        keep = self.keep_mask(layer)
        # every row keeps exactly `budget` tokens; their indices in stream order
        idx = keep.nonzero()[:, -1].view(*keep.shape[:2], self.budget)  # (B, KV, budget)
        gather = idx[..., None].expand(-1, -1, -1, self.keys[layer].shape[-1])
        self.keys[layer] = self.keys[layer].gather(2, gather)
        self.values[layer] = self.values[layer].gather(2, gather)
        self.scores[layer] = self.scores[layer].gather(2, idx)
        self.positions[layer] = self.positions[layer].gather(2, idx)

    def kv_length_after(self, layer: int, new_tokens: int) -> int:
        layer, new_tokens = _check_length_query(layer, new_tokens, self.num_layers)
        keys = self.keys[layer]
        return (0 if keys is None else keys.shape[2]) + new_tokens

    def kept_positions(self, layer: int) -> torch.Tensor:
        """Absolute positions of the kept tokens of every row and KV head: [B, KV, kept] (torch.long)."""
        pos = self.positions[check_layer(layer, self.num_layers)]
        return torch.empty(0, dtype=torch.long) if pos is None else pos.clone()

    @property
    def seq_len(self) -> int:
        return self.seen[0]

    def nbytes(self) -> int:
        """Bytes of keys and values plus the per-token scores and positions H2O needs to choose."""
        tensors = self.keys + self.values + self.scores + self.positions
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)
