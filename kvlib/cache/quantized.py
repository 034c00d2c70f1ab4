"""A KIVI-style quantized KV cache (chapter 04): old tokens in 2/4/8 bits, recent ones in full precision.

KIVI (Liu et al. 2024, "KIVI: A Tuning-Free Asymmetric 2bit Quantization for KV Cache") observed
that a few key *channels* are much larger than the rest, while values have no such structure. So:

- keys are quantized **per channel**: each channel of a group of ``G`` consecutive tokens shares a
  scale and a minimum (:func:`kvlib.quant.quantize`, granularity ``"per_channel"``, ``group_size=G``);
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

Layout of one layer, in position order (``n`` tokens stored, ``s = min(sinks, n)``):

    [ sinks: s tokens, fp ][ quantized: g * G tokens ][ residual: n - s - g * G tokens, fp ]
    g = max(0, (n - s - residual) // G)

``update`` returns ``(k_all, v_all)`` [B, num_kv_heads, n, head_dim] in that order, in the input's
dtype: the quantized part dequantized, the rest exactly as given. It dequantizes the whole store at
every call (a reference cache, not a fast one). It deliberately keeps no dequantized copy: that
copy would be a full-precision cache beside the quantized one, and the bytes measured from the
cache (``nbytes``, :func:`kvlib.memory.cache_nbytes`) would no longer be what KIVI stores.

Bytes: :meth:`QuantizedKVCache.nbytes` is measured from the tensors (packed codes, scales, mins or
zero-points, sink and residual tokens) and equals
:func:`kvlib.memory.quantized_kv_cache_bytes` computed from the shapes alone. Every stored tensor
owns its storage (slices are copied), so :func:`kvlib.memory.cache_nbytes` gives the same number.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from kvlib.cache.dense import check_appendable, check_layer, check_same_kind
from kvlib.quant import (
    FLOAT_DTYPES,
    QuantizedTensor,
    check_bits,
    check_scheme,
    quantize,
    value_group_size,
)
from kvlib.validate import require_int, require_tensor

__all__ = ["QuantizedKVCache"]

_KV_DIMS = ("batch", "num_kv_heads", "tokens", "head_dim")
_KV_LAYOUT = "[B, num_kv_heads, T_new, head_dim]"


class _Layer:
    """What one layer stores: fp sinks, the quantized store (None until the first group), fp residual."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor) -> None:
        empty = k[:, :, :0]  # (B, KV, 0, D): carries batch, heads, head_dim, dtype and device
        self.sink_k, self.sink_v = empty.clone(), empty.clone()
        self.residual_k, self.residual_v = empty.clone(), empty.clone()
        self.quant_k: QuantizedTensor | None = None  # per channel, (B, KV, g * G, D)
        self.quant_v: QuantizedTensor | None = None  # per token, (B, KV, g * G, D)
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
    by default.

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
    ) -> None:
        self.num_layers = require_int("num_layers", num_layers, minimum=1)
        self.bits = check_bits(bits)
        self.group_size = require_int("group_size", group_size, minimum=1)
        self.residual = require_int("residual", residual, minimum=0)
        self.sinks = require_int("sinks", sinks, minimum=0)
        self.scheme = check_scheme(scheme)
        self._layers: list[_Layer | None] = [None] * self.num_layers

    # --- the cache contract -------------------------------------------------------------------------

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``k``, ``v`` [B, num_kv_heads, T_new, head_dim] after ``layer``'s tokens; return all of them
        [B, num_kv_heads, T, head_dim], in position order and the input's dtype."""
        layer = check_layer(layer, self.num_layers)
        require_tensor("k", k, 4, _KV_LAYOUT)
        require_tensor("v", v, 4, _KV_LAYOUT)
        check_same_kind(("k", "v"), k, v)
        if k.dtype not in FLOAT_DTYPES:
            raise ValueError(
                f"layer {layer}: k and v must be float32, float16, bfloat16 or float64 to be quantized, "
                f"got {k.dtype}"
            )
        state = self._layers[layer]
        if state is not None:
            check_appendable(f"layer {layer} k", state.residual_k, k, 2, _KV_DIMS)
        start = 0 if state is None else state.length
        self._check_finite(layer, "keys", k, start)
        self._check_finite(layer, "values", v, start)
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
        while state.residual_k.shape[-2] >= self.residual + self.group_size:
            self._age_one_group(layer, state)
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
        """Tokens of ``layer`` held in the quantized store (a multiple of ``group_size``)."""
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
            f"residual={self.residual}, sinks={self.sinks}, scheme={self.scheme!r}, seq_len={self.seq_len})"
        )

    # --- internals ----------------------------------------------------------------------------------

    def _age_one_group(self, layer: int, state: _Layer) -> None:
        """Quantize the oldest G tokens of the residual window and append them to the quantized store."""
        G = self.group_size
        old_k, old_v = state.residual_k[:, :, :G], state.residual_v[:, :, :G]  # (B, KV, G, D)
        qk = quantize(old_k, self.bits, self.scheme, "per_channel", G, where=f"layer {layer} keys")
        gv = value_group_size(G, old_v.shape[-1])
        qv = quantize(old_v, self.bits, self.scheme, "per_token", gv, where=f"layer {layer} values")
        state.quant_k = qk if state.quant_k is None else _append(state.quant_k, qk)
        state.quant_v = qv if state.quant_v is None else _append(state.quant_v, qv)
        state.residual_k = state.residual_k[:, :, G:].clone()  # own storage: the slice would pin the old one
        state.residual_v = state.residual_v[:, :, G:].clone()
        assert state.num_quantized % G == 0, "the quantized store grows by whole groups only"

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

    @staticmethod
    def _check_finite(layer: int, what: str, x: torch.Tensor, start: int) -> None:
        """ValueError naming the layer and the position of the first NaN/inf of x (the new tokens)."""
        finite = torch.isfinite(x)
        if not bool(finite.all()):
            b, h, t, d = torch.nonzero(~finite)[0].tolist()
            raise ValueError(
                f"layer {layer} {what}: {int((~finite).sum())} NaN/inf value(s), first at batch row {b}, "
                f"kv head {h}, position {start + t}, channel {d} (= {x[b, h, t, d].item()}); a quantized "
                "cache cannot compute a scale from them (check the model's activations or dtype overflow)"
            )


def _append(store: QuantizedTensor, group: QuantizedTensor) -> QuantizedTensor:
    """``store`` followed by ``group`` along tokens: what quantizing both at once would give.

    Per-channel key groups stack along the group axis of their scales ([..., T/G, D]); per-token
    value scales ([..., T, D/Gv]) stack along tokens. Both sit on dim -2, as do the codes.
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
