"""Quantized KV caches (chapter 04): KIVI's integer cache, and a cache stored in a smaller float format.

:class:`QuantizedKVCache` is the KIVI-style cache: old tokens in 2/4/8 bits, recent ones in full precision.
KIVI (Liu et al. 2024, "KIVI: A Tuning-Free Asymmetric 2bit Quantization for KV Cache") observed
that a few key *channels* are much larger than the rest, while values have no such structure. So:

- keys are quantized **per channel** (``key_granularity="per_channel"``, the default): each channel
  of a group of ``G`` consecutive tokens shares a scale and a minimum (:func:`kvlib.quant.quantize`,
  granularity ``"per_channel"``, ``group_size=G``);
- values are quantized **per token**: each token's channels share a scale, in groups of ``G``
  channels when ``G`` divides ``head_dim``, otherwise over the whole ``head_dim`` (the rule of
  :func:`kvlib.quant.value_group_size`);
- a per-channel key group needs ``G`` tokens before it can be quantized, and the newest tokens
  matter most to attention, so the most recent tokens stay in full precision in a **residual
  window**. Rule, applied after every update: while the window holds ``residual + G`` tokens or
  more, its oldest ``G`` tokens are quantized (keys and values) and appended to the quantized store.
  The window therefore always holds the ``min(n, residual)`` most recent tokens and at most
  ``residual + G - 1``; the state depends only on how many tokens were stored, not on how they
  were split between calls (a prompt of 300 tokens quantizes all its full groups at once);
- optionally the first ``sinks`` tokens stay in full precision forever (attention sinks, Xiao et
  al. 2023, "Efficient Streaming Language Models with Attention Sinks"): the first tokens of a
  sequence draw a large share of attention, and their error would weigh on every later step.

``key_granularity="per_token"`` is the comparison the chapter measures KIVI against (the usual int8
and group-wise int4 caches): keys are quantized exactly like values, per token in groups of
``value_group_size(G, head_dim)`` channels. A per-token group is one token, so nothing waits for
``G`` tokens: the aging rule moves tokens out of the window one at a time, and the window holds
exactly the ``min(n, residual)`` most recent tokens (with ``residual=0`` every token is quantized as
it arrives).

Layout of one layer, in position order (``n`` tokens stored, ``s = min(sinks, n)``):

    [ sinks: s tokens, fp ][ quantized: q tokens ][ residual: n - s - q tokens, fp ]
    q = max(0, (n - s - residual) // G) * G     keys per channel (KIVI)
    q = max(0, n - s - residual)                keys per token

``update`` returns ``(k_all, v_all)`` [B, num_kv_heads, n, head_dim] in that order, in the input's
dtype: the quantized part dequantized, the rest exactly as given. It dequantizes the whole store at
every call (a reference cache, not a fast one). It deliberately keeps no dequantized copy: that
copy would be a full-precision cache beside the quantized one, and the bytes measured from the
cache (``nbytes``, :func:`kvlib.memory.cache_nbytes`) would no longer be what KIVI stores.

Bytes: :meth:`QuantizedKVCache.nbytes` is measured from the tensors (packed codes, scales, mins or
zero-points, sink and residual tokens) and equals
:func:`kvlib.memory.quantized_kv_cache_bytes` computed from the shapes alone. Every stored tensor
owns its storage (slices are copied), so :func:`kvlib.memory.cache_nbytes` gives the same number.

:class:`FloatKVCache` is the other family of the chapter's table: every key and value stored in a
smaller *float* format (``torch.bfloat16``, ``torch.float16`` or ``torch.float8_e4m3fn``) and returned
in the input's dtype; no window, no groups. fp8 follows vLLM's ``k_scale``/``v_scale``: one float32
scale per layer for the keys and one for the values (:func:`kvlib.quant.quantize_fp8`), fixed by the
layer's first update, ``s = max|x| / 448``. A later value beyond that first maximum does not move the
scale: it **saturates** at ``+-448 * s`` (the price of a static scale: vLLM calibrates it in advance).
Its bytes (:meth:`FloatKVCache.nbytes`, from the tensors) equal :func:`kvlib.memory.float_kv_cache_bytes`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from kvlib.cache.dense import KV_DIMS, check_appendable, check_layer, check_update_args
from kvlib.quant import (
    FLOAT_DTYPES,
    QuantizedTensor,
    check_bits,
    check_key_granularity,
    check_scheme,
    check_storage_dtype,
    quantize,
    quantize_fp8,
    value_group_size,
)
from kvlib.validate import require_int

__all__ = ["FloatKVCache", "QuantizedKVCache"]


def _check_update(layer: int, num_layers: int, k: torch.Tensor, v: torch.Tensor, purpose: str) -> int:
    """The checks both caches run on an update's arguments before anything changes; returns the layer."""
    layer = check_update_args(layer, k, v, num_layers)
    if k.dtype not in FLOAT_DTYPES:
        raise ValueError(
            f"layer {layer}: k and v must be float32, float16, bfloat16 or float64 to be {purpose}, "
            f"got {k.dtype}"
        )
    return layer


class _Layer:
    """What one layer stores: fp sinks, the quantized store (None until the first group), fp residual."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor) -> None:
        empty = k[:, :, :0]  # (B, KV, 0, D): carries batch, heads, head_dim, dtype and device
        self.sink_k, self.sink_v = empty.clone(), empty.clone()
        self.residual_k, self.residual_v = empty.clone(), empty.clone()
        self.quant_k: QuantizedTensor | None = None  # per channel or per token, (B, KV, q, D)
        self.quant_v: QuantizedTensor | None = None  # per token, (B, KV, q, D)
        self.length = 0  # tokens stored

    @property
    def num_quantized(self) -> int:
        return 0 if self.quant_k is None else self.quant_k.shape[-2]


class QuantizedKVCache:
    """KIVI-style cache: per-channel keys, per-token values, ``residual`` recent and ``sinks`` first
    tokens in full precision (the rules are in the module docstring).

    ``bits`` in {2, 4, 8}; ``group_size`` (G): tokens per key group and channels per value group
    (see :func:`value_group_size`); ``residual`` (R) >= 0; ``sinks`` >= 0; ``scheme``: a
    :data:`kvlib.quant.SCHEMES` name for both keys and values, ``"kivi"`` (min kept in floating point)
    by default; ``key_granularity``: ``"per_channel"`` (KIVI, the default) or ``"per_token"`` (keys
    quantized like values, in groups of ``value_group_size(G, head_dim)`` channels, one token at a time).

    Same contract as every kvlib cache: ``update(layer, k, v)`` with k, v [B, num_kv_heads, T_new,
    head_dim] returns everything stored for that layer, [B, num_kv_heads, T, head_dim]; ``seq_len``;
    ``reset()``. Every update of a layer must keep its batch, num_kv_heads, head_dim, dtype and device
    (ValueError otherwise); NaN or inf in k or v is a ValueError naming the layer and the position.
    A rejected update leaves the cache as it was.
    """

    def __init__(
        self,
        num_layers: int,
        bits: int = 4,
        group_size: int = 32,
        residual: int = 128,
        sinks: int = 0,
        scheme: str = "kivi",
        key_granularity: str = "per_channel",
    ) -> None:
        self.num_layers = require_int("num_layers", num_layers, minimum=1)
        self.bits = check_bits(bits)
        self.group_size = require_int("group_size", group_size, minimum=1)
        self.residual = require_int("residual", residual, minimum=0)
        self.sinks = require_int("sinks", sinks, minimum=0)
        self.scheme = check_scheme(scheme)
        self.key_granularity = check_key_granularity(key_granularity)
        self._layers: list[_Layer | None] = [None] * self.num_layers

    # --- the cache contract -------------------------------------------------------------------------

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``k``, ``v`` [B, num_kv_heads, T_new, head_dim] after ``layer``'s tokens; return all of them
        [B, num_kv_heads, T, head_dim], in position order and the input's dtype."""
        layer = _check_update(layer, self.num_layers, k, v, "quantized")
        state = self._layers[layer]
        if state is not None:
            check_appendable(f"layer {layer} k", state.residual_k, k, 2, KV_DIMS)
        start = 0 if state is None else state.length
        _check_finite(layer, "keys", k, start, _NO_SCALE)
        _check_finite(layer, "values", v, start, _NO_SCALE)
        # Validated: from here on nothing raises, so a rejected update leaves the cache untouched.
        if state is None:
            state = self._layers[layer] = _Layer(k, v)
        k, v = k.detach(), v.detach()  # a cache stores values, never autograd history
        to_sinks = min(max(self.sinks - state.sink_k.shape[-2], 0), k.shape[-2])
        if to_sinks:
            state.sink_k = torch.cat([state.sink_k, k[:, :, :to_sinks]], dim=-2)  # (B, KV, s, D), own copy
            state.sink_v = torch.cat([state.sink_v, v[:, :, :to_sinks]], dim=-2)
        state.residual_k = torch.cat([state.residual_k, k[:, :, to_sinks:]], dim=-2)  # (B, KV, r, D)
        state.residual_v = torch.cat([state.residual_v, v[:, :, to_sinks:]], dim=-2)
        state.length += k.shape[-2]
        self._age(layer, state)
        return self._gather(state)

    @property
    def seq_len(self) -> int:
        """Tokens stored in layer 0."""
        state = self._layers[0]
        return 0 if state is None else state.length

    def reset(self) -> None:
        """Forget every token of every layer."""
        self._layers = [None] * self.num_layers

    # --- introspection ------------------------------------------------------------------------------

    def num_quantized_tokens(self, layer: int) -> int:
        """Tokens of ``layer`` held in the quantized store (whole groups of ``group_size`` for per-channel
        keys, any number for per-token keys)."""
        state = self._layers[check_layer(layer, self.num_layers)]
        return 0 if state is None else state.num_quantized

    def num_residual_tokens(self, layer: int) -> int:
        """Tokens of ``layer`` in the full-precision residual window."""
        state = self._layers[check_layer(layer, self.num_layers)]
        return 0 if state is None else state.residual_k.shape[-2]

    def num_sink_tokens(self, layer: int) -> int:
        """Tokens of ``layer`` kept in full precision as attention sinks (at most ``sinks``)."""
        state = self._layers[check_layer(layer, self.num_layers)]
        return 0 if state is None else state.sink_k.shape[-2]

    def nbytes(self) -> int:
        """Bytes held, measured from the tensors: packed codes, scales and mins/zero-points of both
        stores, and the full-precision sink and residual tokens (see
        :func:`kvlib.memory.quantized_kv_cache_bytes` for the same number from shapes)."""
        total = 0
        for state in self._layers:
            if state is None:
                continue
            for t in (state.sink_k, state.sink_v, state.residual_k, state.residual_v):
                total += t.numel() * t.element_size()
            for q in (state.quant_k, state.quant_v):
                total += 0 if q is None else q.nbytes()
        return total

    def __repr__(self) -> str:
        return (
            f"QuantizedKVCache(layers={self.num_layers}, bits={self.bits}, group_size={self.group_size}, "
            f"residual={self.residual}, sinks={self.sinks}, scheme={self.scheme!r}, "
            f"key_granularity={self.key_granularity!r}, seq_len={self.seq_len})"
        )

    # --- internals ----------------------------------------------------------------------------------

    def _age(self, layer: int, state: _Layer) -> None:
        """Move tokens out of the residual window by the rule of the module docstring."""
        G, R = self.group_size, self.residual
        if self.key_granularity == "per_channel":
            while state.residual_k.shape[-2] >= R + G:  # a key group needs G tokens
                self._quantize_oldest(layer, state, G)
            assert state.num_quantized % G == 0, "per-channel keys: the store grows by whole groups only"
        elif state.residual_k.shape[-2] > R:  # per-token keys: every token past the window, at once
            self._quantize_oldest(layer, state, state.residual_k.shape[-2] - R)

    def _quantize_oldest(self, layer: int, state: _Layer, count: int) -> None:
        """Quantize the oldest ``count`` tokens of the residual window and append them to the store
        (per-token groups are one token each, so ``count`` tokens at once equal one at a time)."""
        old_k, old_v = state.residual_k[:, :, :count], state.residual_v[:, :, :count]  # (B, KV, count, D)
        gv = value_group_size(self.group_size, old_v.shape[-1])
        gk = self.group_size if self.key_granularity == "per_channel" else gv
        where = f"layer {layer} keys"
        qk = quantize(old_k, self.bits, self.scheme, self.key_granularity, gk, where=where)
        qv = quantize(old_v, self.bits, self.scheme, "per_token", gv, where=f"layer {layer} values")
        state.quant_k = qk if state.quant_k is None else _append(state.quant_k, qk)
        state.quant_v = qv if state.quant_v is None else _append(state.quant_v, qv)
        state.residual_k = state.residual_k[:, :, count:].clone()  # own storage: the slice would pin the old
        state.residual_v = state.residual_v[:, :, count:].clone()

    def _gather(self, state: _Layer) -> tuple[torch.Tensor, torch.Tensor]:
        """(k_all, v_all) [B, KV, T, D]: sinks, dequantized store, residual, in position order."""
        keys, values = [state.sink_k], [state.sink_v]
        if state.quant_k is not None:
            keys.append(state.quant_k.dequantize())  # (B, KV, g * G, D), input dtype
            values.append(state.quant_v.dequantize())
        keys.append(state.residual_k)
        values.append(state.residual_v)
        k_all, v_all = torch.cat(keys, dim=-2), torch.cat(values, dim=-2)  # (B, KV, T, D)
        assert k_all.shape[-2] == state.length, "every stored token is returned exactly once"
        return k_all, v_all


def _append(store: QuantizedTensor, group: QuantizedTensor) -> QuantizedTensor:
    """``store`` followed by ``group`` along tokens: what quantizing both at once would give.

    Per-channel key groups stack along the group axis of their scales ([..., T/G, D]); per-token
    scales ([..., T, D/Gv]) stack along tokens. Both sit on dim -2, as do the codes.
    """
    cat = lambda a, b: None if a is None else torch.cat([a, b], dim=-2)  # noqa: E731
    return replace(
        store,
        codes=cat(store.codes, group.codes),
        scales=cat(store.scales, group.scales),
        zero_points=cat(store.zero_points, group.zero_points),
        mins=cat(store.mins, group.mins),
        shape=(*store.shape[:-2], store.shape[-2] + group.shape[-2], store.shape[-1]),
    )


_NO_SCALE = (
    "a quantized cache cannot compute a scale from them (check the model's activations or dtype overflow)"
)


def _check_finite(layer: int, what: str, x: torch.Tensor, start: int, why: str) -> None:
    """ValueError naming the layer and the position of the first NaN/inf of x (the new tokens)."""
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        b, h, t, d = torch.nonzero(~finite)[0].tolist()
        raise ValueError(
            f"layer {layer} {what}: {int((~finite).sum())} NaN/inf value(s), first at batch row {b}, "
            f"kv head {h}, position {start + t}, channel {d} (= {x[b, h, t, d].item()}); {why}"
        )


# --- float storage ---------------------------------------------------------------------------------------


class _FloatLayer:
    """One layer of a FloatKVCache: keys and values in the storage dtype (fp8: as QuantizedTensors)."""

    def __init__(self, k: torch.Tensor, storage_dtype: torch.dtype) -> None:
        self.empty = k[:, :, :0].clone()  # (B, KV, 0, D) in the input dtype: what later updates must match
        self.keys = self.values = k[:, :, :0].to(storage_dtype)  # (B, KV, T, D), bf16/fp16 (fp8: unused)
        self.quant_k: QuantizedTensor | None = None  # fp8 only, set by the first update with elements
        self.quant_v: QuantizedTensor | None = None
        self.length = 0


class FloatKVCache:
    """Keys and values stored in ``storage_dtype`` (bf16, fp16 or fp8 e4m3), returned in the input dtype.

    ``storage_dtype``: one of :data:`kvlib.quant.STORAGE_DTYPES`. bf16 and fp16 are a plain cast (round
    to nearest even); fp8 keeps one float32 scale per layer for the keys and one for the values, fixed by the
    layer's first update that holds any element (``max|x| / 448``, :func:`kvlib.quant.quantize_fp8`);
    later values are divided by that scale and **saturate** at ``+-448``, i.e. at ``+-448 * scale``
    (see the module docstring). ``nbytes()`` is measured from the tensors and equals
    :func:`kvlib.memory.float_kv_cache_bytes`.

    Same contract as every kvlib cache: ``update(layer, k, v)`` with k, v [B, num_kv_heads, T_new,
    head_dim] returns everything stored for that layer, [B, num_kv_heads, T, head_dim]; ``seq_len``;
    ``reset()``. Every update of a layer must keep its batch, num_kv_heads, head_dim, dtype and device
    (ValueError otherwise); NaN or inf in k or v, or a value that overflows fp16 or bf16 storage, is a
    ValueError naming the layer and the position. A rejected update leaves the cache as it was.
    """

    def __init__(self, num_layers: int, storage_dtype: torch.dtype = torch.bfloat16) -> None:
        self.num_layers = require_int("num_layers", num_layers, minimum=1)
        self.storage_dtype = check_storage_dtype(storage_dtype)
        self._layers: list[_FloatLayer | None] = [None] * self.num_layers

    @property
    def is_fp8(self) -> bool:
        return self.storage_dtype == torch.float8_e4m3fn

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``k``, ``v`` [B, num_kv_heads, T_new, head_dim] after ``layer``'s tokens; return all of them
        [B, num_kv_heads, T, head_dim], in position order and the input's dtype."""
        layer = _check_update(layer, self.num_layers, k, v, f"stored in {self.storage_dtype}")
        state = self._layers[layer]
        if state is not None:
            check_appendable(f"layer {layer} k", state.empty, k, 2, KV_DIMS)
        start = 0 if state is None else state.length
        k, v = k.detach(), v.detach()  # a cache stores values, never autograd history
        new_k, new_v = (
            self._encode(layer, state, "keys", k, start),
            self._encode(layer, state, "values", v, start),
        )
        # Validated and encoded: from here on nothing raises, so a rejected update changes nothing.
        if state is None:
            state = self._layers[layer] = _FloatLayer(k, self.storage_dtype)
        if not self.is_fp8:
            state.keys = torch.cat([state.keys, new_k], dim=-2)  # (B, KV, T, D), own storage
            state.values = torch.cat([state.values, new_v], dim=-2)
        elif new_k is not None:
            state.quant_k = new_k if state.quant_k is None else _append_fp8(state.quant_k, new_k)
            state.quant_v = new_v if state.quant_v is None else _append_fp8(state.quant_v, new_v)
        state.length += k.shape[-2]
        return self._gather(state)

    @property
    def seq_len(self) -> int:
        """Tokens stored in layer 0."""
        state = self._layers[0]
        return 0 if state is None else state.length

    def reset(self) -> None:
        """Forget every token of every layer (and, for fp8, every scale)."""
        self._layers = [None] * self.num_layers

    def scales(self, layer: int) -> tuple[float, float] | None:
        """fp8: ``(k_scale, v_scale)`` of ``layer``, or None before its first update (or not fp8)."""
        state = self._layers[check_layer(layer, self.num_layers)]
        if state is None or state.quant_k is None:
            return None
        return state.quant_k.scales.item(), state.quant_v.scales.item()

    def nbytes(self) -> int:
        """Bytes held, measured from the tensors: stored keys and values, plus fp8's float32 scales (see
        :func:`kvlib.memory.float_kv_cache_bytes` for the same number from shapes)."""
        total = 0
        for state in self._layers:
            if state is None:
                continue
            for t in (state.keys, state.values):
                total += t.numel() * t.element_size()
            for q in (state.quant_k, state.quant_v):
                total += 0 if q is None else q.nbytes()
        return total

    def __repr__(self) -> str:
        return (
            f"FloatKVCache(layers={self.num_layers}, storage_dtype={self.storage_dtype}, "
            f"seq_len={self.seq_len})"
        )

    # --- internals ----------------------------------------------------------------------------------

    def _encode(self, layer: int, state: _FloatLayer | None, what: str, x: torch.Tensor, start: int) -> Any:
        """``x`` in the storage format (a tensor; fp8: a QuantizedTensor, or None while no scale can be
        set), or the ValueError that rejects the update. Changes no state."""
        _check_finite(layer, what, x, start, f"{self.storage_dtype} cannot store them")
        if not self.is_fp8:
            stored = x.to(self.storage_dtype)  # (B, KV, T_new, D)
            overflow = ~torch.isfinite(stored)  # finite in x (checked above), too large for the storage
            if bool(overflow.any()):
                b, h, t, d = torch.nonzero(overflow)[0].tolist()
                raise ValueError(
                    f"layer {layer} {what}: {int(overflow.sum())} value(s) overflow {self.storage_dtype} "
                    f"(largest {torch.finfo(self.storage_dtype).max:.5g}), first at batch row {b}, "
                    f"kv head {h}, position {start + t}, channel {d} (= {x[b, h, t, d].item():.5g})"
                )
            return stored
        first = None if state is None else (state.quant_k if what == "keys" else state.quant_v)
        if first is None:  # the layer's scale: set once, from the first update with elements
            return quantize_fp8(x, where=f"layer {layer} {what}") if x.numel() else None
        return quantize_fp8(
            x, scale=first.scales, where=f"layer {layer} {what}"
        )  # the layer's scale, saturating

    def _gather(self, state: _FloatLayer) -> tuple[torch.Tensor, torch.Tensor]:
        """(k_all, v_all) [B, KV, T, D] in the input dtype."""
        if not self.is_fp8:
            return state.keys.to(state.empty.dtype), state.values.to(state.empty.dtype)
        if state.quant_k is None:
            return state.empty, state.empty  # nothing stored yet
        return state.quant_k.dequantize(), state.quant_v.dequantize()  # (B, KV, T, D)


def _append_fp8(store: QuantizedTensor, new: QuantizedTensor) -> QuantizedTensor:
    """``store`` followed by ``new`` (same scale) along tokens."""
    codes = torch.cat([store.codes, new.codes], dim=-2)  # (B, KV, T + T_new, D), float8_e4m3fn
    return replace(store, codes=codes, shape=tuple(codes.shape), group_size=codes.numel())
