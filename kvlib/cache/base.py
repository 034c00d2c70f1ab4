"""The cache interface every KV cache in kvlib implements (dense, GQA, quantized, evicting, paged...).

A model calls ``update`` once per layer per forward pass with the keys (after RoPE) and values of the
new tokens, and attends over whatever the cache returns. A cache is free to store less than it was
given (eviction) or store it differently (quantization); the model never looks inside.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class KVCache(Protocol):
    """Per-layer key/value store.

    ``update(layer, k, v)``: ``k`` and ``v`` are [B, kv_heads, T_new, head_dim] for the new tokens of
    ``layer`` (keys already rotated by RoPE). Returns ``(k_all, v_all)``, [B, kv_heads, T_kept, head_dim],
    everything the cache holds for that layer after storing them, in position order.

    ``seq_len``: tokens stored so far (as seen by layer 0); the model uses it as the position of the
    next token when no explicit positions are given.

    ``reset()``: forget everything (start a new sequence).
    """

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    @property
    def seq_len(self) -> int: ...

    def reset(self) -> None: ...
