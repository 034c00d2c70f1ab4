"""Multi-head latent attention (MLA, DeepSeek-V2, 2024): cache one low-rank latent per token.

GQA shrinks the cache by sharing key/value heads. MLA instead compresses: every token's hidden
state `x` (width C) is projected down to a latent `c = W_DKV x` of width `d_c << H * D`, and the
per-head keys and values are projected back up from it when needed:

    k_h = W_UK[h] c          v_h = W_UV[h] c          (W_UK[h], W_UV[h]: [D, d_c])

Only `c` is cached. RoPE cannot be applied to `k_h` without breaking the trick below (a rotation
that depends on the position would sit between W_UK and c), so DeepSeek-V2 adds a small
"decoupled" RoPE key `k_rope = RoPE(W_KR x)` of width `d_R`, shared by all heads, and caches it
too. Per token and layer the cache holds `d_c + d_R` numbers instead of `2 * H * D`
(DeepSeek-V2: 512 + 64 = 576 instead of 2 * 128 * 128 = 32768).

Decoding never has to materialise k_h: the up-projection can be *absorbed* into the query,

    q_h . k_h = q_h . (W_UK[h] c) = (W_UK[h]^T q_h) . c

so attention runs directly on the cached latents (`absorbed_attention`), and likewise the values
are combined in latent space and projected up once per head afterwards.

This module holds the bytes formula, `expand_latent` (latent -> explicit keys/values; chapter 03
bonus exercise), `absorbed_attention`, a `LatentKVCache`, and a `LatentAttention` layer (random
weights: no shipped model uses MLA) whose cached, absorbed decoding equals its explicit forward.
Simplification against DeepSeek-V2: queries are not low-rank compressed (that saves activations
and parameters, not cache).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from kvlib.attention import causal_mask
from kvlib.cache.dense import check_appendable, check_layer
from kvlib.compat import old_field_names
from kvlib.memory import bytes_per_element
from kvlib.model import apply_rope, rope_cos_sin
from kvlib.validate import require_int, require_tensor

__all__ = [
    "DEEPSEEK_V2_MLA",
    "LatentAttention",
    "LatentKVCache",
    "MLAConfig",
    "absorbed_attention",
    "expand_latent",
    "mla_kv_bytes_per_token",
]


@old_field_names  # n_layers, n_heads still work: chapter 03's notebook used them
@dataclass(frozen=True)
class MLAConfig:
    """Shape of a multi-head latent attention layer stack."""

    dim: int  # model width C
    num_heads: int  # H
    head_dim: int  # D, width of the per-head ("no-RoPE") keys, queries and values
    kv_latent_dim: int  # d_c, the cached latent
    rope_dim: int  # d_R, the decoupled RoPE key shared by all heads (also cached)
    num_layers: int = 1

    def __post_init__(self) -> None:
        for name in ("dim", "num_heads", "head_dim", "kv_latent_dim", "num_layers"):
            require_int(f"MLAConfig.{name}", getattr(self, name), minimum=1)
        require_int("MLAConfig.rope_dim", self.rope_dim, minimum=0)
        if self.rope_dim % 2:
            raise ValueError(f"rope_dim must be even for RoPE, got {self.rope_dim}")


#: DeepSeek-V2 (DeepSeek-AI 2024, "DeepSeek-V2: A Strong, Economical, and Efficient Mixture-of-Experts
#: Language Model", section 3.1.2 and appendix: 60 layers, 128 heads of 128, d_c = 4 * 128, d_R = 64).
DEEPSEEK_V2_MLA = MLAConfig(
    dim=5120, num_heads=128, head_dim=128, kv_latent_dim=512, rope_dim=64, num_layers=60
)


def mla_kv_bytes_per_token(
    num_layers: int, kv_latent_dim: int, rope_dim: int, dtype: torch.dtype | str = torch.float16
) -> int:
    """Cache bytes per token of MLA: `num_layers * (d_c + d_R) * bytes_per_element` (rounded up).

    Compare `2 * num_layers * H * D * bytes_per_element` for MHA: for DeepSeek-V2's shape the latent
    is about 57x smaller. There is no factor 2: one latent replaces both keys and values.
    """
    num_layers = require_int("num_layers", num_layers, minimum=1)
    kv_latent_dim = require_int("kv_latent_dim", kv_latent_dim, minimum=1)
    rope_dim = require_int("rope_dim", rope_dim, minimum=0)
    return math.ceil(num_layers * (kv_latent_dim + rope_dim) * bytes_per_element(dtype))


def _check_up_projection(c_kv: Tensor, w: Tensor, num_heads: int, what: str) -> int:
    num_heads = require_int("num_heads", num_heads, minimum=1)
    require_tensor("c_kv", c_kv, 3, "[B, T, d_c]")
    require_tensor(what, w, 2, "[num_heads * head_dim, d_c]")
    if w.dim() != 2 or w.shape[1] != c_kv.shape[-1] or w.shape[0] % num_heads:
        raise ValueError(
            f"{what} must be [num_heads * head_dim, d_c] = [{num_heads} * D, {c_kv.shape[-1]}], "
            f"got {tuple(w.shape)}"
        )
    return w.shape[0] // num_heads


def expand_latent(c_kv: Tensor, w_uk: Tensor, w_uv: Tensor, num_heads: int) -> tuple[Tensor, Tensor]:
    """Explicit per-head keys and values from cached latents.

    c_kv: [B, T, d_c] latents; w_uk, w_uv: [H * D, d_c] up-projections (`nn.Linear` weights, rows
    h*D .. h*D+D-1 belong to head h). Returns k, v [B, H, T, D] with k[b, h, t] = W_UK[h] c[b, t].
    """
    d = _check_up_projection(c_kv, w_uk, num_heads, "w_uk")
    _check_up_projection(c_kv, w_uv, num_heads, "w_uv")
    num_heads = int(num_heads)
    b, t, _ = c_kv.shape
    k = (c_kv @ w_uk.T).view(b, t, num_heads, d).transpose(1, 2)  # (B, H, T, D)
    v = (c_kv @ w_uv.T).view(b, t, num_heads, d).transpose(1, 2)  # (B, H, T, D)
    return k, v


def _softmax_causal(scores: Tensor, q_start: int) -> Tensor:
    """Causal softmax over the last axis of scores [..., Tq, Tk] for queries at q_start .. q_start+Tq-1."""
    tq, tk = scores.shape[-2:]
    q_pos = torch.arange(q_start, q_start + tq, device=scores.device)  # (Tq,)
    return torch.softmax(scores.masked_fill(causal_mask(q_pos, tk), float("-inf")), dim=-1)


def absorbed_attention(
    q: Tensor,
    c_kv: Tensor,
    w_uk: Tensor,
    w_uv: Tensor,
    q_rope: Tensor | None = None,
    k_rope: Tensor | None = None,
    q_start: int | None = None,
) -> Tensor:
    """Causal attention computed on the latents, never building per-head keys or values.

    q: [B, H, Tq, D] content queries; c_kv: [B, Tk, d_c] cached latents; w_uk, w_uv: [H * D, d_c].
    Optional decoupled RoPE parts: q_rope [B, H, Tq, d_R] and k_rope [B, Tk, d_R] (shared by heads).
        scores[h] = ((W_UK[h]^T q_h) . c + q_rope_h . k_rope) / sqrt(D + d_R)
        out_h     = W_UV[h] (sum_t p_t c_t)
    Returns [B, H, Tq, D], equal to attention over `expand_latent`'s explicit keys/values.
    """
    require_tensor("q", q, 4, "[B, H, Tq, D]")
    b, h, tq, d = q.shape
    if _check_up_projection(c_kv, w_uk, h, "w_uk") != d:
        raise ValueError(f"w_uk rows must be H * D = {h} * {d}, got {w_uk.shape[0]}")
    for name, t in (("q", q), ("c_kv", c_kv)):
        if not t.dtype.is_floating_point:  # the output is cast back to q's dtype: int would truncate
            raise ValueError(f"{name} must be a floating-point tensor, got {t.dtype}")
    _check_up_projection(c_kv, w_uv, h, "w_uv")
    tk, d_c = c_kv.shape[1], c_kv.shape[2]
    if c_kv.shape[0] != b:
        raise ValueError(f"q has batch {b} but c_kv has batch {c_kv.shape[0]}; they must agree")
    _check_rope(q_rope, k_rope, (b, h, tq), (b, tk))
    if tq > tk:
        raise ValueError(
            f"q has Tq={tq} queries but c_kv holds only Tk={tk} latents: cache the new tokens first"
        )
    start = tk - tq if q_start is None else require_int("q_start", q_start)
    if start < 0 or start + tq > tk:
        raise ValueError(
            f"queries at positions {start}..{start + tq - 1} need latents up to there, have Tk={tk} "
            f"(q_start must be in [0, {tk - tq}])"
        )
    w_uk_h = w_uk.float().view(h, d, d_c)  # (H, D, d_c)
    w_uv_h = w_uv.float().view(h, -1, d_c)  # (H, Dv, d_c)
    q_latent = q.float() @ w_uk_h.unsqueeze(0)  # (B, H, Tq, d_c): W_UK[h]^T q_h, absorbed into the query
    scores = q_latent @ c_kv.float().transpose(-1, -2).unsqueeze(1)  # (B, H, Tq, Tk)
    rope_dim = 0
    if q_rope is not None and k_rope is not None:
        rope_dim = q_rope.shape[-1]
        scores = scores + q_rope.float() @ k_rope.float().transpose(-1, -2).unsqueeze(1)  # (B, H, Tq, Tk)
    probs = _softmax_causal(scores / math.sqrt(d + rope_dim), start)  # (B, H, Tq, Tk)
    out_latent = probs @ c_kv.float().unsqueeze(1)  # (B, H, Tq, d_c)
    return (out_latent @ w_uv_h.transpose(-1, -2).unsqueeze(0)).to(q.dtype)  # (B, H, Tq, Dv)


def _check_rope(q_rope: Tensor | None, k_rope: Tensor | None, q_lead: tuple, k_lead: tuple) -> None:
    """Both RoPE parts or neither (one alone used to be ignored silently), with matching shapes."""
    if (q_rope is None) != (k_rope is None):
        given = "q_rope" if k_rope is None else "k_rope"
        raise ValueError(f"pass both q_rope and k_rope or neither; got only {given}")
    if q_rope is None or k_rope is None:
        return
    require_tensor("q_rope", q_rope, 4, "[B, H, Tq, d_R]")
    require_tensor("k_rope", k_rope, 3, "[B, Tk, d_R]")
    if (
        tuple(q_rope.shape[:3]) != q_lead
        or tuple(k_rope.shape[:2]) != k_lead
        or q_rope.shape[3] != k_rope.shape[2]
    ):
        raise ValueError(
            f"q_rope must be [B, H, Tq, d_R] with [B, H, Tq] = {list(q_lead)} and k_rope [B, Tk, d_R] with "
            f"[B, Tk] = {list(k_lead)}, one d_R for both; got {list(q_rope.shape)} and {list(k_rope.shape)}"
        )


class LatentKVCache:
    """Per-layer cache of MLA latents [B, T, d_c] and decoupled RoPE keys [B, T, d_R]."""

    def __init__(self, num_layers: int) -> None:
        self.num_layers = num_layers = require_int("num_layers", num_layers, minimum=1)
        self.latents: list[Tensor | None] = [None] * num_layers
        self.rope_keys: list[Tensor | None] = [None] * num_layers

    def update(self, layer: int, c_kv: Tensor, k_rope: Tensor) -> tuple[Tensor, Tensor]:
        """Append c_kv [B, T, d_c] and k_rope [B, T, d_R]; return everything cached for `layer`."""
        layer = check_layer(layer, self.num_layers)
        require_tensor("c_kv", c_kv, 3, "[B, T, d_c]")
        require_tensor("k_rope", k_rope, 3, "[B, T, d_R]")
        if c_kv.shape[:2] != k_rope.shape[:2] or c_kv.dtype != k_rope.dtype or c_kv.device != k_rope.device:
            raise ValueError(
                f"expected c_kv [B, T, d_c], k_rope [B, T, d_R] of one dtype and device; got "
                f"{list(c_kv.shape)} {c_kv.dtype} on {c_kv.device}, "
                f"{list(k_rope.shape)} {k_rope.dtype} on {k_rope.device}"
            )
        if self.latents[layer] is None:
            self.latents[layer], self.rope_keys[layer] = c_kv, k_rope
        else:
            # check both before changing either, so a failed update leaves the cache as it was
            check_appendable(f"layer {layer} c_kv", self.latents[layer], c_kv, 1, ("batch", "tokens", "d_c"))
            check_appendable(
                f"layer {layer} k_rope", self.rope_keys[layer], k_rope, 1, ("batch", "tokens", "d_R")
            )
            self.latents[layer] = torch.cat([self.latents[layer], c_kv], dim=1)  # (B, P + T, d_c)
            self.rope_keys[layer] = torch.cat([self.rope_keys[layer], k_rope], dim=1)  # (B, P + T, d_R)
        return self.latents[layer], self.rope_keys[layer]  # type: ignore[return-value]

    @property
    def seq_len(self) -> int:
        return 0 if self.latents[0] is None else int(self.latents[0].shape[1])

    def reset(self) -> None:
        self.latents = [None] * self.num_layers
        self.rope_keys = [None] * self.num_layers

    def nbytes(self) -> int:
        """Bytes held by all cached latents and RoPE keys."""
        return sum(t.numel() * t.element_size() for t in self.latents + self.rope_keys if t is not None)


class LatentAttention(nn.Module):
    """One MLA self-attention layer (DeepSeek-V2 style, uncompressed queries), random weights.

    `forward(x, positions, cache=None, layer=0, absorb=False)`: x [B, T, C] -> [B, T, C].
    `absorb=False` expands the latents into explicit keys/values (`expand_latent`); `absorb=True`
    attends on the latents (`absorbed_attention`). Both give the same output.
    """

    def __init__(self, cfg: MLAConfig, rope_theta: float = 10000.0) -> None:
        super().__init__()
        self.cfg, self.rope_theta = cfg, rope_theta
        h, d, r = cfg.num_heads, cfg.head_dim, cfg.rope_dim
        self.q_proj = nn.Linear(cfg.dim, h * (d + r), bias=False)  # content and RoPE parts of every query
        self.kv_down = nn.Linear(cfg.dim, cfg.kv_latent_dim, bias=False)  # W_DKV
        self.k_up = nn.Linear(cfg.kv_latent_dim, h * d, bias=False)  # W_UK
        self.v_up = nn.Linear(cfg.kv_latent_dim, h * d, bias=False)  # W_UV
        self.k_rope_proj = nn.Linear(cfg.dim, r, bias=False) if r else None  # W_KR
        self.o_proj = nn.Linear(h * d, cfg.dim, bias=False)

    def forward(
        self,
        x: Tensor,
        positions: Tensor | None = None,
        cache: LatentKVCache | None = None,
        layer: int = 0,
        absorb: bool = False,
    ) -> Tensor:
        require_tensor("x", x, 3, "[B, T, C]")
        if x.shape[-1] != self.cfg.dim:
            raise ValueError(f"x must be [B, T, C] with C = dim = {self.cfg.dim}, got shape {list(x.shape)}")
        b, t, _ = x.shape
        h, d, r = self.cfg.num_heads, self.cfg.head_dim, self.cfg.rope_dim
        if positions is None:
            offset = cache.seq_len if cache is not None else 0
            positions = torch.arange(offset, offset + t, device=x.device)  # (T,)
        q = self.q_proj(x).view(b, t, h, d + r).transpose(1, 2)  # (B, H, T, D + R)
        q_nope, q_rope = q[..., :d], q[..., d:]  # (B, H, T, D), (B, H, T, R)
        c_kv = self.kv_down(x)  # (B, T, d_c): the only per-head-free thing we cache, plus k_rope
        if r:
            cos, sin = rope_cos_sin(positions, r, self.rope_theta, x.dtype)  # (1, 1, T, R)
            q_rope = apply_rope(q_rope, cos, sin)
            k_rope = apply_rope(self.k_rope_proj(x).unsqueeze(1), cos, sin).squeeze(1)  # (B, T, R)
        else:
            k_rope = c_kv.new_zeros(b, t, 0)
        if cache is not None:
            c_kv, k_rope = cache.update(layer, c_kv, k_rope)  # (B, P + T, d_c), (B, P + T, R)
        if absorb:
            out = absorbed_attention(q_nope, c_kv, self.k_up.weight, self.v_up.weight, q_rope, k_rope)
        else:
            k, v = expand_latent(c_kv, self.k_up.weight, self.v_up.weight, h)  # (B, H, Tk, D) each
            scores = q_nope @ k.transpose(-1, -2)  # (B, H, T, Tk)
            if r:
                scores = scores + q_rope @ k_rope.transpose(-1, -2).unsqueeze(1)  # shared RoPE key
            probs = _softmax_causal(scores.float() / math.sqrt(d + r), c_kv.shape[1] - t).to(v.dtype)
            out = probs @ v  # (B, H, T, D)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, h * d))  # (B, T, C)
