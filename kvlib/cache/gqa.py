"""Grouped-query attention (GQA) and multi-query attention (MQA): fewer key/value heads, smaller cache.

Multi-head attention (MHA) gives every one of the `H` query heads its own key and value head,
so a decoder caches `2 * num_layers * H * head_dim` numbers per token. Shazeer's multi-query
attention (MQA, 2019) shares ONE key/value head between all query heads; Ainslie et al.'s
grouped-query attention (GQA, 2023) sits in between: `KV` key/value heads, each shared by a
group of `G = H / KV` consecutive query heads. Query head `h` reads key/value head `h // G`.

    MHA: KV == H        GQA: 1 < KV < H        MQA: KV == 1

The cache only ever holds the `KV` heads; the sharing happens inside attention, either by
materialising the repeats (`kvlib.attention.repeat_kv`, simple) or, as here, by viewing the
queries as `[B, KV, G * T, D]` so every group attends to its own key/value head in one matmul
without copying it (what fast kernels do). The KV cache shrinks by exactly `H / KV`.

This module holds:

- `grouped_attention`: causal attention with `KV <= H` key/value heads, no repeated copies;
- `gqa_attention_step`: one attention step that appends to a KV-heads-only cache (chapter 03,
  exercise 2);
- `KVHeadsCache`: a `KVCache` that refuses to store anything but the `KV` heads;
- `mean_pool_heads` / `convert_mha_to_gqa`: the GQA paper's conversion of a trained MHA
  checkpoint, mean-pooling the key and value projection heads of each group (exercise 3);
- `kv_bytes_per_token` / `config_kv_bytes_per_token` / `kv_saving_factor`: what a token costs in
  the cache (exercise 4).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import Tensor

from kvlib.attention import _check_inputs, causal_attention, causal_mask, repeat_kv
from kvlib.cache.dense import NaiveKVCache, check_appendable, check_same_kind
from kvlib.memory import ModelShape, kv_cache_bytes
from kvlib.model import TinyDecoder
from kvlib.validate import require_int

__all__ = [
    "KVHeadsCache",
    "config_kv_bytes_per_token",
    "convert_mha_to_gqa",
    "gqa_attention_step",
    "grouped_attention",
    "kv_bytes_per_token",
    "kv_saving_factor",
    "mean_pool_heads",
    "repeat_kv",
    "repeated_attention",
]


def _check_heads(num_heads: int, num_kv_heads: int) -> int:
    """Return the group size `num_heads // num_kv_heads`, or raise if the heads do not split evenly."""
    num_heads = require_int("num_heads", num_heads, minimum=1)
    num_kv_heads = require_int("num_kv_heads", num_kv_heads, minimum=1)
    if num_heads % num_kv_heads:
        raise ValueError(
            f"num_heads ({num_heads}) must be a multiple of num_kv_heads ({num_kv_heads}): each key/value "
            "head serves a whole group of query heads"
        )
    return num_heads // num_kv_heads


def repeated_attention(q: Tensor, k: Tensor, v: Tensor, q_start: int | None = None) -> Tensor:
    """GQA the simple way: copy every key/value head to its group (`repeat_kv`), then plain attention.

    Same inputs, output and maths as `grouped_attention`; materialises [B, H, Tk, D] keys/values
    per call (what the Llama reference code does), so it reads `H / KV` times more memory.
    """
    _check_inputs(q=q, k=k, v=v)
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            f"expected q [B, H, Tq, D] and k, v [B, KV, Tk, D], got {tuple(q.shape)}, {tuple(k.shape)}, "
            f"{tuple(v.shape)}"
        )
    g = _check_heads(q.shape[1], k.shape[1])
    return causal_attention(q, repeat_kv(k, g), repeat_kv(v, g), q_start=q_start)


def grouped_attention(q: Tensor, k: Tensor, v: Tensor, q_start: int | None = None) -> Tensor:
    """Causal attention where `H` query heads share `KV` key/value heads, without copying them.

    q: [B, H, Tq, D] queries at absolute positions `q_start .. q_start + Tq - 1`
       (default `Tk - Tq`: the queries are the last `Tq` positions of the keys).
    k, v: [B, KV, Tk, D] with `H % KV == 0`. Query head `h` uses key/value head `h // (H // KV)`.
    Returns [B, H, Tq, D], equal to `causal_attention(q, repeat_kv(k, G), repeat_kv(v, G))`.

    The grouping is a view: the `G` query heads of group j become `G * Tq` rows of one matmul
    against key/value head j, so no key or value is ever copied.
    """
    _check_inputs(q=q, k=k, v=v)
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            f"expected q [B, H, Tq, D] and k, v [B, KV, Tk, D], got {tuple(q.shape)}, {tuple(k.shape)}, "
            f"{tuple(v.shape)}"
        )
    if k.shape != v.shape:
        raise ValueError(f"k and v must have the same shape, got {tuple(k.shape)} and {tuple(v.shape)}")
    b, h, tq, d = q.shape
    _, kv, tk, dk = k.shape
    if dk != d or k.shape[0] != b:
        raise ValueError(f"q {tuple(q.shape)} and k {tuple(k.shape)} disagree on batch or head_dim")
    g = _check_heads(h, kv)
    start = tk - tq if q_start is None else require_int("q_start", q_start)
    if start < 0 or start + tq > tk:
        raise ValueError(f"queries at positions {start}..{start + tq - 1} need keys up to there, have {tk}")
    # Pack each group's queries into the rows of one matmul: [B, KV, G*Tq, D] @ [B, KV, D, Tk].
    # (Broadcasting [B, KV, G, Tq, D] against [B, KV, 1, D, Tk] would make torch.matmul expand,
    # i.e. copy, the keys G times, which is exactly what GQA wants to avoid.)
    qg = q.float().reshape(b, kv, g * tq, d)  # (B, KV, G*Tq, D): rows ordered (group member, position)
    scores = qg @ k.float().transpose(-1, -2) / math.sqrt(d)  # (B, KV, G*Tq, Tk)
    scores = scores.view(b, kv, g, tq, tk)  # (B, KV, G, Tq, Tk)
    q_pos = torch.arange(start, start + tq, device=q.device)  # (Tq,)
    scores = scores.masked_fill(causal_mask(q_pos, tk), float("-inf"))
    probs = torch.softmax(scores, dim=-1)  # (B, KV, G, Tq, Tk), float32 like causal_attention
    out = probs.view(b, kv, g * tq, tk) @ v.float()  # (B, KV, G*Tq, D)
    return out.reshape(b, h, tq, d).to(q.dtype)  # (B, H, Tq, D)


def gqa_attention_step(
    q: Tensor, k_new: Tensor, v_new: Tensor, past: tuple[Tensor, Tensor] | None = None
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """One attention step with a cache that stores only the key/value heads.

    q: [B, H, T, D] queries for the T new tokens; k_new, v_new: [B, KV, T, D] their keys/values;
    past: `(k_past, v_past)`, each [B, KV, P, D], or None for the first step (P = 0).
    The new tokens sit at positions P .. P + T - 1 and attend causally to all P + T keys.
    Returns `(out [B, H, T, D], (k_all, v_all))` with k_all, v_all [B, KV, P + T, D]: the cache
    grows by T tokens of KV heads only, `H / KV` times less than an MHA cache.
    """
    _check_inputs(q=q, k_new=k_new, v_new=v_new)
    if k_new.shape != v_new.shape or k_new.dim() != 4:
        raise ValueError(
            f"k_new and v_new must both be [B, KV, T, D], got {tuple(k_new.shape)}, {tuple(v_new.shape)}"
        )
    if past is None:
        k_all, v_all = k_new, v_new
    else:
        k_past, v_past = _check_past(past, k_new)
        k_all = torch.cat([k_past, k_new], dim=-2)  # (B, KV, P + T, D)
        v_all = torch.cat([v_past, v_new], dim=-2)
    out = grouped_attention(q, k_all, v_all, q_start=k_all.shape[-2] - q.shape[-2])
    return out, (k_all, v_all)


def _check_past(past: Any, k_new: Tensor) -> tuple[Tensor, Tensor]:
    """``past`` as a (k_past, v_past) pair that ``k_new`` can extend, or an error naming the mismatch."""
    if not isinstance(past, (tuple, list)) or len(past) != 2:
        raise TypeError(
            f"past must be None or a (k_past, v_past) pair of [B, KV, P, D], got {type(past).__name__}"
        )
    k_past, v_past = past
    _check_inputs(k_past=k_past, v_past=v_past)
    check_same_kind(("k_past", "v_past"), k_past, v_past)
    if k_past.dim() != 4:
        raise ValueError(f"cached keys must be [B, KV, P, D], got shape {tuple(k_past.shape)}")
    # torch.cat would silently upcast a dtype change and fail deep inside on a shape change
    check_appendable("past", k_past, k_new, 2, ("batch", "num_kv_heads", "tokens", "head_dim"))
    return k_past, v_past


class KVHeadsCache(NaiveKVCache):
    """The naive growing cache (chapter 01) that only accepts `num_kv_heads` key/value heads.

    A GQA model must cache keys/values BEFORE they are repeated for the query heads; storing
    the repeated tensors would throw away the whole saving. `update` therefore rejects any
    tensor whose head axis (dim 1) is not `num_kv_heads`; `nbytes()` then shows the saving.
    """

    def __init__(self, num_layers: int, num_kv_heads: int) -> None:
        super().__init__(num_layers)
        self.num_kv_heads = require_int("num_kv_heads", num_kv_heads, minimum=1)

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append k, v [B, num_kv_heads, T, D] for `layer`; return all cached [B, num_kv_heads, P + T, D]."""
        if isinstance(k, Tensor) and k.dim() == 4 and k.shape[1] != self.num_kv_heads:
            raise ValueError(
                f"this cache stores {self.num_kv_heads} key/value heads, got {k.shape[1]}: cache k/v before "
                "repeat_kv, not after"
            )
        return super().update(layer, k, v)


# --------------------------------------------------------------------------------------------
# MHA -> GQA conversion (Ainslie et al. 2023, section 2.1: "mean pooling" of the KV heads)
# --------------------------------------------------------------------------------------------


def mean_pool_heads(weight: Tensor, num_heads: int, num_kv_heads: int) -> Tensor:
    """Mean-pool the output rows of a key or value projection from `num_heads` to `num_kv_heads` heads.

    weight: [num_heads * head_dim, in_features], the `nn.Linear` weight whose rows `h*D .. h*D+D-1`
    produce head `h`. Group `j` is the consecutive heads `j*G .. j*G+G-1` (G = num_heads/num_kv_heads),
    the same heads that will read key/value head `j` after conversion, and
        W'_j = (1/G) * sum_{h in group j} W_h.
    Returns [num_kv_heads * head_dim, in_features]. Because the projection is linear (and RoPE acts
    on every head in the same way), the pooled head's keys are the mean of the group's keys.
    """
    if not isinstance(weight, Tensor):
        raise TypeError(
            f"weight must be a torch.Tensor [num_heads * head_dim, in], got {type(weight).__name__}"
        )
    if weight.dim() != 2:
        raise ValueError(
            f"expected a 2-D projection weight [num_heads * head_dim, in], got {tuple(weight.shape)}"
        )
    if not weight.dtype.is_floating_point:  # a mean of integers has no dtype (and no meaning here)
        raise ValueError(f"weight must be a floating-point projection weight, got {weight.dtype}")
    g = _check_heads(num_heads, num_kv_heads)
    out_features, in_features = weight.shape
    if out_features % num_heads:
        raise ValueError(f"weight rows ({out_features}) are not a multiple of num_heads ({num_heads})")
    d = out_features // num_heads
    grouped = weight.reshape(num_kv_heads, g, d, in_features)  # (KV, G, D, in)
    return grouped.mean(dim=1).reshape(num_kv_heads * d, in_features)  # (KV * D, in)


def convert_mha_to_gqa(model: TinyDecoder, num_kv_heads: int) -> TinyDecoder:
    """Return a copy of an MHA TinyDecoder whose attention has `num_kv_heads` key/value heads.

    In every layer `self_attn.k_proj` and `self_attn.v_proj` are mean-pooled per group
    (`mean_pool_heads`); queries, output projections, MLPs, norms and embeddings are copied
    unchanged, and so is `allow_long_context`. The input model is not modified. With
    `num_kv_heads == num_heads` the copy computes exactly the same logits; with fewer KV heads it is an
    approximation that the GQA paper then "uptrains" for ~5% of the pre-training steps
    (we do not: chapter 03 measures the raw cost).
    """
    if not isinstance(model, TinyDecoder):
        raise TypeError(f"model must be a kvlib.model.TinyDecoder, got {type(model).__name__}")
    cfg = model.config
    _check_heads(cfg.num_heads, num_kv_heads)
    if cfg.num_kv_heads != cfg.num_heads:
        raise ValueError(
            f"expected an MHA model (num_kv_heads == num_heads), got {cfg.num_kv_heads} of {cfg.num_heads}"
        )
    # a copy keeps the model's context opt-in: converting heads does not change what it may attend to
    new = TinyDecoder(
        dataclasses.replace(cfg, num_kv_heads=num_kv_heads), allow_long_context=model.allow_long_context
    )
    state = {name: t.detach().clone() for name, t in model.state_dict().items()}
    for i in range(cfg.num_layers):
        for proj in ("k_proj", "v_proj"):
            key = f"layers.{i}.self_attn.{proj}.weight"
            state[key] = mean_pool_heads(state[key], cfg.num_heads, num_kv_heads)  # (KV * D, C)
    new.load_state_dict(state)
    param = next(model.parameters())
    return new.to(device=param.device, dtype=param.dtype).eval()


# --------------------------------------------------------------------------------------------
# What a token costs
# --------------------------------------------------------------------------------------------


def kv_bytes_per_token(
    num_layers: int, num_kv_heads: int, head_dim: int, dtype: torch.dtype | str = torch.float16
) -> int:
    """Cache bytes one token adds: `2 (K and V) * num_layers * num_kv_heads * head_dim * bytes_per_element`.

    The query heads do not appear: only key/value heads are cached. This is
    `kvlib.memory.kv_cache_bytes` at `seq_len = batch = 1`.
    """
    sizes = (
        require_int(n, x, minimum=0)
        for n, x in (("num_layers", num_layers), ("num_kv_heads", num_kv_heads), ("head_dim", head_dim))
    )
    return kv_cache_bytes(*sizes, seq_len=1, batch=1, dtype=dtype)


_SHAPE_FIELDS = ("num_layers", "num_heads", "num_kv_heads", "head_dim")
_OLD_SHAPE_FIELDS = ("n_layers", "n_heads", "n_kv_heads", "head_dim")


def _config_dims(config: Any) -> tuple[int, int, int, int]:
    """(layers, query heads, KV heads, head_dim) of a `ModelShape` or a TinyDecoder `ModelConfig`."""
    if isinstance(config, ModelShape) or all(hasattr(config, f) for f in _SHAPE_FIELDS):
        fields = _SHAPE_FIELDS
    elif all(hasattr(config, f) for f in _OLD_SHAPE_FIELDS):  # a config object with the old names
        fields = _OLD_SHAPE_FIELDS
    else:
        fields = ()
    if fields:  # a hand-built config with 0 KV heads would divide by zero in kv_saving_factor
        layers, heads, kv, head_dim = (
            require_int(f"config.{f}", getattr(config, f), minimum=1) for f in fields
        )
        return layers, heads, kv, head_dim
    raise TypeError(
        f"expected a kvlib.memory.ModelShape or kvlib.model.ModelConfig, got {type(config).__name__}"
    )


def config_kv_bytes_per_token(config: Any, dtype: torch.dtype | str = torch.float16) -> int:
    """`kv_bytes_per_token` of a model: a `MODEL_CONFIGS` entry or a TinyDecoder `ModelConfig`."""
    num_layers, _, num_kv_heads, head_dim = _config_dims(config)
    return kv_bytes_per_token(num_layers, num_kv_heads, head_dim, dtype)


def kv_saving_factor(config: Any) -> float:
    """How many times smaller the KV cache is than that of the MHA version of the same model.

    MHA caches `num_heads` key/value heads per layer, GQA `num_kv_heads`; layers, head_dim and dtype
    cancel, so the factor is exactly `num_heads / num_kv_heads` (8 for Llama-2-70B, 4 for Llama-3-8B).
    """
    _, num_heads, num_kv_heads, _ = _config_dims(config)
    return num_heads / num_kv_heads
