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

Keys and values of another floating dtype are converted to the cache's dtype on the way in (a
float32 model may keep an fp16 cache). A value too large for that dtype (above 65504 in fp16)
becomes inf; the cache warns once (RuntimeWarning, per cache object) when that happens, because
attention over an inf key gives NaN.
"""

from __future__ import annotations

import math
import warnings

import torch

from kvlib.cache.dense import check_layer, check_same_kind
from kvlib.validate import describe, require_device, require_int, require_tensor


class StaticKVCache:
    """Preallocated per-layer key/value buffers of shape [batch, num_kv_heads, max_seq_len, head_dim].

    Same contract as every kvlib cache: `update(layer, k, v)` stores k, v of shape
    [batch, num_kv_heads, T_new, head_dim] after the tokens already cached in that layer and returns
    (k_all, v_all) of shape [batch, num_kv_heads, T_cached + T_new, head_dim]; `seq_len` is the number
    of tokens cached (in layer 0); `reset()` forgets them without freeing the buffers.

    The buffers store values, never autograd history: keys that require grad are copied in
    detached, and the returned views do not require grad (a cache is inference state).
    """

    def __init__(
        self,
        num_layers: int,
        batch: int,
        num_kv_heads: int,
        head_dim: int,
        max_seq_len: int,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> None:
        num_layers, batch, num_kv_heads, head_dim, max_seq_len = (
            require_int(name, value, minimum=1)
            for name, value in (
                ("num_layers", num_layers),
                ("batch", batch),
                ("num_kv_heads", num_kv_heads),
                ("head_dim", head_dim),
                ("max_seq_len", max_seq_len),
            )
        )
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            # An integer buffer would silently truncate every key (quantized caches store scales too).
            raise TypeError(
                f"dtype must be a floating-point torch.dtype such as torch.float16, got {describe(dtype)}"
            )
        self.num_layers = num_layers
        self.max_seq_len = max_seq_len
        self.shape = (batch, num_kv_heads, max_seq_len, head_dim)
        self.dtype = dtype
        self.device = require_device("device", device)
        self._warned_overflow = False
        # One allocation per layer, up front: [B, H_kv, max_seq_len, D] each.
        self.keys, self.values = self._allocate()
        self.device = self.keys[0].device  # "cuda" -> "cuda:0": update compares like with like
        self.lengths = [0] * num_layers

    def _allocate(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        try:
            make = lambda: torch.zeros(self.shape, dtype=self.dtype, device=self.device)
            return [make() for _ in range(self.num_layers)], [make() for _ in range(self.num_layers)]
        except RuntimeError as exc:  # torch's text names neither the cache nor max_seq_len
            need = 2 * self.num_layers * math.prod(self.shape) * torch.finfo(self.dtype).bits // 8
            raise type(exc)(
                f"StaticKVCache could not allocate {2 * self.num_layers} buffers of {list(self.shape)} "
                f"{self.dtype} ({need:,} bytes) on {self.device}: lower max_seq_len={self.max_seq_len} "
                f"or batch={self.shape[0]}"
            ) from None

    @property
    def seq_len(self) -> int:
        """Tokens cached so far (layer 0 is updated first in every forward pass)."""
        return self.lengths[0]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v [B, H_kv, T_new, D] at positions [len, len + T_new) of `layer`; return views of all."""
        layer = check_layer(layer, self.num_layers)
        batch, heads, _, head_dim = self.shape
        layout = f"[{batch}, {heads}, T_new, {head_dim}] (batch, num_kv_heads, new tokens, head_dim)"
        for name, t in (("k", k), ("v", v)):
            require_tensor(name, t, 4, layout)
            if (t.shape[0], t.shape[1], t.shape[3]) != (batch, heads, head_dim):
                raise ValueError(f"{name} must have shape {layout}, got {list(t.shape)}")
            if not t.dtype.is_floating_point:
                raise ValueError(
                    f"{name} must be a floating-point tensor to store in a {self.dtype} cache, got {t.dtype}"
                )
            if t.device != self.device:
                raise ValueError(f"{name} is on {t.device} but the cache's buffers are on {self.device}")
        check_same_kind(("k", "v"), k, v)
        start, new = self.lengths[layer], k.shape[2]
        end = start + new
        if end > self.max_seq_len:
            raise RuntimeError(
                f"StaticKVCache is full: layer {layer} holds {start} tokens, adding {new} would exceed "
                f"max_seq_len={self.max_seq_len}; allocate a larger cache or call reset()"
            )
        # In-place copy of only the new tokens: no allocation, O(T_new) bytes moved. Under no_grad,
        # because the buffers are inference state: a requires_grad k would otherwise make every
        # buffer a node of the caller's autograd graph (grad_fn=CopySlices) and keep that graph alive.
        with torch.no_grad():
            self.keys[layer][:, :, start:end].copy_(k)
            self.values[layer][:, :, start:end].copy_(v)
        self.lengths[layer] = end
        if k.dtype != self.dtype and not self._warned_overflow:
            self._warn_if_overflowed(layer, start, end, k, v)
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]  # views [B, H_kv, end, D]

    def _warn_if_overflowed(self, layer: int, start: int, end: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Warn (once per cache) if a finite input became inf in the narrower buffer dtype.

        Only runs when the inputs' dtype differs from the buffers' and until the first warning, so a
        cache used in its own dtype pays nothing.
        """
        if torch.finfo(k.dtype).max <= torch.finfo(self.dtype).max:
            return  # the buffer holds every finite input value: nothing can overflow
        for name, given, buffer in (("k", k, self.keys[layer]), ("v", v, self.values[layer])):
            stored = buffer[:, :, start:end]
            if bool((stored.isinf() & given.isfinite()).any()):
                self._warned_overflow = True
                largest = given[given.isfinite()].abs().max().item()
                warnings.warn(
                    f"StaticKVCache: {name} of layer {layer} has values up to {largest:.3g}, beyond "
                    f"{self.dtype}'s max {torch.finfo(self.dtype).max:.6g}; they are stored as inf and "
                    "attention over them gives NaN (use a wider dtype such as torch.bfloat16 or "
                    "torch.float32). Warned once per cache.",
                    RuntimeWarning,
                    stacklevel=3,
                )
                return

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
