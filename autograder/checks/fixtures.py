"""Shared inputs for checks: seeded tensors, tiny models, bytes per dtype, and wrong attention variants.

One home for what several chapters build, so every chapter's hidden tests draw from the same,
reproducible fixtures (and a new chapter gets them by importing this module).
"""

from __future__ import annotations

import math
from typing import Any

import torch


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(gen: torch.Generator, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Seeded normal values in `dtype` (drawn in float32, so a case is the same whatever the dtype)."""
    return torch.randn(*shape, generator=gen).to(dtype)


def bytes_per_element(dtype: torch.dtype | str) -> float:
    """Bytes per stored number, as kvlib.memory defines them (fp16 2, int8 1, "int4" 0.5, ...)."""
    from kvlib.memory import bytes_per_element as reference

    return reference(dtype)


def tiny_model(
    seed: int = 0,
    num_heads: int = 4,
    num_kv_heads: int = 4,
    num_layers: int = 2,
    dim: int = 32,
    max_seq_len: int = 64,
    sharpen: float = 8.0,
) -> Any:
    """A random TinyDecoder in eval mode, small enough for hundreds of check calls.

    `sharpen` scales every weight matrix: at the default init attention is near uniform and greedy
    choices barely depend on the context, so a wrong position or a dropped key would go unseen.
    """
    from kvlib.model import ModelConfig, TinyDecoder

    torch.manual_seed(seed)
    cfg = ModelConfig(
        vocab_size=97,
        dim=dim,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        ffn_dim=2 * dim,
        max_seq_len=max_seq_len,
    )
    model = TinyDecoder(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(sharpen)
    return model


def attention_variant(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_start: int | None = None,
    *,
    mask: str = "offset",
    scale: float | None = None,
    softmax_dim: int = -1,
    fill: float = float("-inf"),
    heads: str = "grouped",
) -> torch.Tensor:
    """Causal attention with one chosen mistake, computed in float64, returned in q's dtype.

    q [B, H, Tq, D]; k, v [B, KV, Tk, D] with KV dividing H. The query block starts at `q_start`
    (default Tk - Tq). Mistakes: `mask` one of offset (correct), no_offset (j > i), end_aligned
    (Tk - Tq instead of q_start), wrong_axis, strict (diagonal masked), none, transposed_tril;
    `scale` instead of 1/sqrt(D); softmax over `softmax_dim`; masked scores filled with `fill`
    (0.0 multiplies by the mask); `heads` grouped (correct: head h reads KV head h // G) or tiled
    (h % KV).
    """
    h, kv = q.shape[1], k.shape[1]
    g = h // kv
    if g > 1:
        if heads == "tiled":
            k, v = k.repeat(1, g, 1, 1), v.repeat(1, g, 1, 1)
        else:
            k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
    Tq, Tk, D = q.shape[-2], k.shape[-2], q.shape[-1]
    start = Tk - Tq if q_start is None else q_start
    scores = (q.double() @ k.double().transpose(-2, -1)) * (1 / math.sqrt(D) if scale is None else scale)
    i = torch.arange(Tq)[:, None]
    j = torch.arange(Tk)[None, :]
    masked = {
        "offset": j > start + i,
        "no_offset": j > i,
        "end_aligned": j > (Tk - Tq) + i,
        "wrong_axis": j < start + i,
        "strict": j >= start + i,
        "none": torch.zeros(Tq, Tk, dtype=torch.bool),
        "transposed_tril": (torch.tril(torch.ones(Tk, Tq, dtype=torch.bool)).T == 0)
        if Tk >= Tq
        else torch.zeros(Tq, Tk, dtype=torch.bool),
    }[mask]
    scores = scores.masked_fill(masked, fill) if fill != 0.0 else scores * (~masked)
    weights = torch.softmax(scores, dim=softmax_dim)
    return (weights @ v.double()).to(q.dtype)
