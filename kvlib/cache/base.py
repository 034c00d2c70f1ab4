"""The seam between the model and every KV cache in kvlib (dense, GQA, quantized, evicting, paged...).

Each attention layer hands the cache its queries, the new tokens' keys and values and a
:class:`ForwardBatch` (where those tokens sit), and the cache produces the layer's attention output:

    out = attend(cache, layer, q, k, v, batch)          # q (B, H, T, D), k and v (B, KV, T, D)

Most caches only decide how keys and values are *stored*. They implement ``update`` (the
:class:`KVCache` protocol below) and :func:`attend` does the rest: store with ``update``, then causal
attention over whatever ``update`` returned. Chapters 01-03 and every cache a learner writes there
work this way, unchanged. A cache opts in to more by defining any of:

- ``attend(layer, q, k, v, batch) -> out``: it computes attention itself (a paged cache reads its
  block pools with the Triton kernel; a quantized cache may attend over its packed keys). It then
  also handles ragged batches (rows of different lengths, ``batch.lengths``).
- ``observe_attention(layer, weights)``: it receives the softmax weights [B, H, T, T_kept] that the
  default path computed anyway (an H2O cache accumulates them to find heavy hitters). Only caches
  that define it make the default path keep the weights around.
- ``rotates_keys = True``: the model hands it queries and keys *before* RoPE. Its ``update`` stores
  and returns keys before RoPE, and :func:`attend` rotates what it returned at positions ``0 .. n-1``,
  the index inside the cache, and the new queries at the last T of them (a StreamingLLM cache
  re-numbers the tokens it kept, so a key's angle depends on where it sits in the cache, not where it
  was first seen). A cache with its own ``attend`` rotates them itself, with ``batch.rope``.
- ``kv_length_after(layer, new_tokens) -> int``: for a cache that keeps fewer keys than it was given
  (eviction), how many ``update`` will return after storing ``new_tokens`` more. Only
  :mod:`kvlib.hf` asks: transformers sizes its attention mask before any layer stores anything.

Why this shape: nano-vLLM passes batch metadata through a global context that attention reads, which
hides a data flow a learner has to see; tiny-llm's ``update_and_fetch`` returns keys for the model to
attend over, which leaves no room for a cache that attends its own way. Here the metadata travels as
an argument and the cache owns the attention call, with ``update`` as the default. Ragged batches are
padded on the right with per-row lengths (nanochat's ``cache_seqlens``), not flattened into one
token stream with cumulative lengths (vLLM's varlen layout): every tensor keeps the [B, T] shape of
chapters 01-03, at the price of padding when a long prefill chunk shares a step with decode tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from kvlib.attention import causal_attention, repeat_kv


@runtime_checkable
class KVCache(Protocol):
    """Per-layer key/value store: what a cache needs for the default attention path.

    ``update(layer, k, v)``: ``k`` and ``v`` are [B, num_kv_heads, T_new, head_dim] for the new tokens of
    ``layer`` (keys already rotated by RoPE). Returns ``(k_all, v_all)``, [B, num_kv_heads, T_kept, head_dim],
    everything the cache holds for that layer after storing them, in position order.

    ``seq_len``: tokens stored so far (as seen by layer 0); the model uses it as the position of the
    next token when no explicit positions are given.

    ``reset()``: forget everything (start a new sequence).
    """

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    @property
    def seq_len(self) -> int: ...

    def reset(self) -> None: ...


@dataclass(frozen=True)
class ForwardBatch:
    """Where the tokens of one forward pass sit: everything a cache needs besides q, k and v.

    ``positions``: [B, T] absolute position of every input token (its RoPE angle).
    ``lengths``: [B] real tokens per row, padding after them, or None when every row is all real.
        Only caches with their own ``attend`` accept rows shorter than T.
    ``cos``, ``sin``: RoPE of ``positions``, [1|B, 1, T, head_dim], computed once per forward.
    ``rope_theta``: RoPE base, for caches that rotate at other positions (:meth:`rope`).
    """

    positions: torch.Tensor
    lengths: torch.Tensor | None
    cos: torch.Tensor
    sin: torch.Tensor
    rope_theta: float

    def rope(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Rotate x [B, H, T, D] to ``positions`` ([T] or [B, T]), e.g. a key re-numbered after eviction."""
        from kvlib.model import apply_rope, rope_cos_sin  # the model module imports this one

        cos, sin = rope_cos_sin(positions, x.shape[-1], self.rope_theta, x.dtype)
        return apply_rope(x, cos, sin)


def rotates_keys(cache: Any) -> bool:
    """Whether ``cache`` takes queries and keys before RoPE (and rotates them itself)."""
    return getattr(cache, "rotates_keys", False) is True


def rotate_in_cache(
    q: torch.Tensor, k: torch.Tensor, batch: ForwardBatch
) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE at positions inside the cache: the n kept keys [B, KV, n, D] at ``0 .. n-1`` and the T
    queries [B, H, T, D] (the last T keys' tokens) at ``n-T .. n-1``. Only distances matter to RoPE, so
    this is the stream's attention with the evicted tokens cut out and the kept ones closed up."""
    n, T = k.shape[2], q.shape[2]
    cache_positions = torch.arange(n, device=k.device)  # (n,)
    return batch.rope(q, cache_positions[n - T :]), batch.rope(k, cache_positions)


def attend(
    cache: Any, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: ForwardBatch
) -> torch.Tensor:
    """The attention output [B, H, T, D] of ``layer`` for queries q [B, H, T, D] and new k, v [B, KV, T, D].

    No cache: causal attention over the T tokens themselves. A cache with its own ``attend``: that.
    Otherwise the default path: ``cache.update`` stores k and v and returns every key it keeps (and
    for a ``rotates_keys`` cache both are rotated at their places in the cache); the queries are the
    last T of them (a cache that evicted older tokens returns fewer, never the new
    ones), and ``observe_attention`` receives the weights if the cache defines it.
    """
    own_attend = getattr(cache, "attend", None)
    if own_attend is not None:
        return own_attend(layer, q, k, v, batch)
    if cache is not None:
        if batch.lengths is not None:
            raise ValueError(
                f"{type(cache).__name__} keeps one length for the whole batch, so it cannot store rows of "
                "different lengths (lengths=...): the padding would be cached as tokens; use a cache with "
                "per-row lengths such as kvlib.paged.PagedKVCache"
            )
        k, v = cache.update(layer, k, v)  # (B, KV, T_kept, D): everything cached so far
        if rotates_keys(cache):
            q, k = rotate_in_cache(q, k, batch)
    n_rep = q.shape[1] // k.shape[1]
    k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)  # (B, H, T_kept, D)
    observe = getattr(cache, "observe_attention", None)
    if observe is None:
        return causal_attention(q, k, v)  # (B, H, T, D); queries are the last T cached positions
    out, weights = causal_attention(q, k, v, return_weights=True)
    observe(layer, weights)
    return out
