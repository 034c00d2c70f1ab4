"""The naive KV cache: keep every key and value, grow by concatenation (chapter 01)."""

from __future__ import annotations

import torch


class NaiveKVCache:
    """One growing K and V tensor per layer, [B, kv_heads, T, head_dim], extended with ``torch.cat``.

    Simple and exact, but each step copies the whole cache: appending one token costs O(T) memory
    traffic, so a sequence of n tokens costs O(n^2) copying overall (chapter 02 fixes this).
    """

    def __init__(self, num_layers: int) -> None:
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.num_layers = num_layers
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append ``k``, ``v`` [B, kv_heads, T_new, head_dim] to ``layer``; return all stored K, V."""
        if not 0 <= layer < self.num_layers:
            raise IndexError(f"layer {layer} out of range for a cache of {self.num_layers} layers")
        if k.shape != v.shape or k.dim() != 4:
            raise ValueError(f"k, v must both be [B, kv_heads, T_new, head_dim]; got {k.shape}, {v.shape}")
        if self.keys[layer] is None:
            self.keys[layer], self.values[layer] = k, v
        else:
            self.keys[layer] = torch.cat([self.keys[layer], k], dim=-2)  # (B, Hkv, T + T_new, D)
            self.values[layer] = torch.cat([self.values[layer], v], dim=-2)
        return self.keys[layer], self.values[layer]

    @property
    def seq_len(self) -> int:
        """Tokens stored in layer 0."""
        return 0 if self.keys[0] is None else self.keys[0].shape[-2]

    def reset(self) -> None:
        self.keys = [None] * self.num_layers
        self.values = [None] * self.num_layers

    def nbytes(self) -> int:
        """Bytes held by the K and V tensors of all layers."""
        return sum(t.numel() * t.element_size() for t in self.keys + self.values if t is not None)
