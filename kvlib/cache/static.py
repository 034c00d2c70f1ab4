"""A preallocated ("static") KV cache: one buffer per layer, written in place, never reallocated.

The growing cache (`NaiveKVCache`) calls `torch.cat` at every step, so step t allocates a new
[B, H, t, D] tensor and copies the t-1 old tokens into it: O(t) work and a fresh allocation per
step, O(n^2) bytes copied over a generation, and a transient peak of old + new copies. A static
cache allocates [B, H, max_seq_len, D] once up front and copies only the new token into it:
O(1) allocations per step and a constant footprint. The price is memory reserved for tokens
that may never come (chapter 06's paged cache fixes that). transformers' `StaticCache` and
`torch.compile`-friendly decoders use the same idea, because fixed shapes avoid recompiles.

`update` returns views `buffer[:, :, :length]`, so attention sees exactly the tokens written and
no masking of the empty tail is needed.
"""

from __future__ import annotations

import torch


class StaticKVCache:
    """Preallocated per-layer key/value buffers of shape [batch, kv_heads, max_seq_len, head_dim].

    Same contract as every kvlib cache: `update(layer, k, v)` stores k, v of shape
    [batch, kv_heads, T_new, head_dim] after the tokens already cached in that layer and returns
    (k_all, v_all) of shape [batch, kv_heads, T_cached + T_new, head_dim]; `seq_len` is the number
    of tokens cached (in layer 0); `reset()` forgets them without freeing the buffers.
    """

    def __init__(
        self,
        num_layers: int,
        batch: int,
        kv_heads: int,
        head_dim: int,
        max_seq_len: int,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> None:
        for name, value in (
            ("num_layers", num_layers),
            ("batch", batch),
            ("kv_heads", kv_heads),
            ("head_dim", head_dim),
            ("max_seq_len", max_seq_len),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.num_layers = num_layers
        self.max_seq_len = max_seq_len
        self.shape = (batch, kv_heads, max_seq_len, head_dim)
        self.dtype = dtype
        self.device = torch.device(device)
        # One allocation per layer, up front: [B, H_kv, max_seq_len, D] each.
        self.keys = [torch.zeros(self.shape, dtype=dtype, device=self.device) for _ in range(num_layers)]
        self.values = [torch.zeros(self.shape, dtype=dtype, device=self.device) for _ in range(num_layers)]
        self.lengths = [0] * num_layers

    @property
    def seq_len(self) -> int:
        """Tokens cached so far (layer 0 is updated first in every forward pass)."""
        return self.lengths[0]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v [B, H_kv, T_new, D] at positions [len, len + T_new) of `layer`; return views of all."""
        if not 0 <= layer < self.num_layers:
            raise IndexError(f"layer must be in [0, {self.num_layers}), got {layer}")
        batch, heads, _, head_dim = self.shape
        for name, t in (("k", k), ("v", v)):
            if t.dim() != 4 or (t.shape[0], t.shape[1], t.shape[3]) != (batch, heads, head_dim):
                raise ValueError(
                    f"{name} must have shape [{batch}, {heads}, T_new, {head_dim}] "
                    f"(batch, kv_heads, new tokens, head_dim), got {list(t.shape)}"
                )
        if k.shape != v.shape:
            raise ValueError(f"k and v must have the same shape, got {list(k.shape)} and {list(v.shape)}")
        start, new = self.lengths[layer], k.shape[2]
        end = start + new
        if end > self.max_seq_len:
            raise RuntimeError(
                f"StaticKVCache is full: layer {layer} holds {start} tokens, adding {new} would exceed "
                f"max_seq_len={self.max_seq_len}; allocate a larger cache or call reset()"
            )
        # In-place copy of only the new tokens: no allocation, O(T_new) bytes moved.
        self.keys[layer][:, :, start:end].copy_(k)
        self.values[layer][:, :, start:end].copy_(v)
        self.lengths[layer] = end
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]  # views [B, H_kv, end, D]

    def reset(self) -> None:
        """Forget all cached tokens; the buffers stay allocated for reuse."""
        self.lengths = [0] * self.num_layers

    def nbytes(self) -> int:
        """Bytes reserved by the buffers (all of max_seq_len, whether filled or not)."""
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)

    def __repr__(self) -> str:
        return (
            f"StaticKVCache(layers={self.num_layers}, shape={list(self.shape)}, dtype={self.dtype}, "
            f"seq_len={self.seq_len})"
        )
