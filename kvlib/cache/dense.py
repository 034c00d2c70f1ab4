"""The naive KV cache: keep every key and value, grow by concatenation (chapter 01)."""

from __future__ import annotations

from typing import Any

import torch

from kvlib.validate import require_int, require_tensor


def check_layer(layer: Any, num_layers: int) -> int:
    """``layer`` as an int in [0, num_layers): TypeError for a non-integer, IndexError out of range."""
    layer = require_int("layer", layer)
    if not 0 <= layer < num_layers:
        raise IndexError(f"layer must be in [0, {num_layers}) (a cache of {num_layers} layers), got {layer}")
    return layer


def check_same_kind(names: tuple[str, str], first: torch.Tensor, second: torch.Tensor) -> None:
    """Two tensors that must be stored side by side: same shape, dtype and device."""
    a, b = names
    if first.shape != second.shape:
        raise ValueError(
            f"{a} and {b} must have the same shape, got {list(first.shape)} and {list(second.shape)}"
        )
    if first.dtype != second.dtype or first.device != second.device:
        raise ValueError(
            f"{a} and {b} must have the same dtype and device, got {first.dtype} on {first.device} "
            f"and {second.dtype} on {second.device}"
        )


def check_appendable(
    what: str, stored: torch.Tensor, new: torch.Tensor, axis: int, dim_names: tuple[str, ...]
) -> None:
    """``new`` can be concatenated after ``stored`` along ``axis`` without torch.cat failing or upcasting.

    torch.cat silently promotes mixed dtypes (fp16 + fp32 -> fp32) and fails deep inside on a shape
    mismatch; a cache must instead say which dimension or dtype changed between calls.
    """
    for i, name in enumerate(dim_names):
        if i != axis % stored.dim() and stored.shape[i] != new.shape[i]:
            raise ValueError(
                f"{what}: new {name} (dim {i}) is {new.shape[i]} but the cache holds {stored.shape[i]} "
                f"(stored shape {list(stored.shape)}, given {list(new.shape)}); call reset() to start "
                "a different sequence"
            )
    if stored.dtype != new.dtype or stored.device != new.device:
        raise ValueError(
            f"{what}: the cache holds {stored.dtype} on {stored.device}, got {new.dtype} on {new.device}; "
            "every update of a cache must use the same dtype and device (convert before calling update)"
        )


KV_DIMS = ("batch", "num_kv_heads", "tokens", "head_dim")  # names of k's and v's dims, for messages
_KV_LAYOUT = "[B, num_kv_heads, T_new, head_dim]"


def check_update_args(layer: Any, k: Any, v: Any, num_layers: int) -> int:
    """What every cache's ``update(layer, k, v)`` checks before it changes anything: ``layer`` in range,
    ``k`` and ``v`` 4-d tensors [B, num_kv_heads, T_new, head_dim] of the same shape, dtype and device.
    Returns the layer as an int."""
    layer = check_layer(layer, num_layers)
    require_tensor("k", k, 4, _KV_LAYOUT)
    require_tensor("v", v, 4, _KV_LAYOUT)
    check_same_kind(("k", "v"), k, v)
    return layer


class NaiveKVCache:
    """One growing K and V tensor per layer, [B, num_kv_heads, T, head_dim], extended with ``torch.cat``.

    Simple and exact, but each step copies the whole cache: appending one token costs O(T) memory
    traffic, so a sequence of n tokens costs O(n^2) copying overall (chapter 02 fixes this).
    Every update of a layer must keep its batch, num_kv_heads, head_dim, dtype and device; a change is
    a ValueError naming it, and the cache is left as it was.

    The first update of a layer stores the caller's ``k`` and ``v`` themselves, not copies (as
    transformers' ``DynamicCache`` does; a copy would double the memory of the prompt's keys):
    changing them in place afterwards (``k.zero_()``) changes the cache too, so pass tensors you
    will not modify, or ``k.clone()``. Later updates concatenate into new tensors.
    """

    def __init__(self, num_layers: int) -> None:
        self.num_layers = require_int("num_layers", num_layers, minimum=1)
        self.keys: list[torch.Tensor | None] = [None] * self.num_layers
        self.values: list[torch.Tensor | None] = [None] * self.num_layers

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append ``k``, ``v`` [B, num_kv_heads, T_new, head_dim] to ``layer``; return all stored K, V."""
        layer = check_update_args(layer, k, v, self.num_layers)
        if self.keys[layer] is None:
            self.keys[layer], self.values[layer] = k, v
        else:
            check_appendable(f"layer {layer} k", self.keys[layer], k, 2, KV_DIMS)
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
