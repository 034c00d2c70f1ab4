"""Causal attention over a key/value cache, and ``repeat_kv`` for grouped-query attention.

Notation: B batch, H heads, Tq new queries, Tk keys (everything cached so far, new tokens included),
D head dimension. The queries are the *last* Tq positions of the key sequence unless ``q_start`` says
otherwise, so query i sits at absolute position ``q_start + i`` and may attend keys ``j <= q_start + i``:

    scores[b, h, i, j] = q[b, h, i] . k[b, h, j] / sqrt(D)          (masked to -inf where j > q_start + i)
    out[b, h, i]       = sum_j softmax_j(scores[b, h, i, :]) v[b, h, j]

Prefill (no cache yet) is ``Tq == Tk``, ``q_start = 0``: the usual lower-triangular mask. A decode step
is ``Tq == 1``, ``q_start = Tk - 1``: the new token sees every cached key, nothing is masked.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from kvlib.validate import require_bool, require_int


def _check_inputs(**tensors: Any) -> None:
    """Every named argument is a floating-point tensor, all on one device."""
    devices = {}
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor [B, H, T, D], got {type(t).__name__}")
        if not t.dtype.is_floating_point:
            # softmax weights cast back to an integer dtype would silently be all zeros
            raise ValueError(f"{name} must be a floating-point tensor, got {t.dtype}")
        devices[name] = t.device
    if len(set(devices.values())) > 1:
        raise ValueError(
            f"q, k and v must be on one device, got {', '.join(f'{n} on {d}' for n, d in devices.items())}"
        )


def causal_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_start: int | None = None,
    *,
    return_weights: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Scaled dot-product attention with a causal mask offset by ``q_start``.

    Args:
        q: queries [B, H, Tq, D].
        k, v: keys and values [B, H, Tk, D] (same H as ``q``; for GQA call :func:`repeat_kv` first).
        q_start: absolute index of query 0 among the keys; default ``Tk - Tq``. Must satisfy
            ``0 <= q_start`` and ``q_start + Tq <= Tk``.

        return_weights: also return the softmax weights [B, H, Tq, Tk] (float32), for a cache that
            scores its keys by the attention they receive (H2O).

    Returns:
        [B, H, Tq, D] in ``q``'s dtype (and the weights if asked). Scores and softmax are in float32.
    """
    _check_inputs(q=q, k=k, v=v)
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            "expected q, k, v of shape [B, H, T, D]; "
            f"got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if k.shape != v.shape:
        raise ValueError(f"k and v must have the same shape; got {tuple(k.shape)} and {tuple(v.shape)}")
    B, H, Tq, D = q.shape
    if k.shape[0] != B or k.shape[1] != H or k.shape[3] != D:
        raise ValueError(
            f"k/v shape {tuple(k.shape)} does not match q {tuple(q.shape)} in batch, heads or head_dim "
            "(for grouped-query attention, repeat_kv the keys and values first)"
        )
    Tk = k.shape[2]
    if Tq > Tk:
        raise ValueError(
            f"q has Tq={Tq} queries but k/v hold only Tk={Tk} keys, so no q_start fits: the queries' own "
            "keys must be among them (append the new keys to the cache before attending)"
        )
    q_start = Tk - Tq if q_start is None else require_int("q_start", q_start)
    if q_start < 0 or q_start + Tq > Tk:
        raise ValueError(f"q_start={q_start} with Tq={Tq} queries needs 0 <= q_start <= Tk - Tq = {Tk - Tq}")

    q_pos = torch.arange(q_start, q_start + Tq, device=q.device)  # (Tq,)
    out, weights = _masked_attention(q, k, v, causal_mask(q_pos, Tk))  # (B, H, Tq, D), (B, H, Tq, Tk)
    return (out, weights) if require_bool("return_weights", return_weights) else out


def _masked_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, hidden: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T / sqrt(D), -inf where ``hidden``) v for q [B, H, Tq, D], k, v [B, H, Tk, D] and a
    mask broadcasting to [B, H, Tq, Tk]; scores and softmax in float32. Returns (out in q's dtype,
    the weights [B, H, Tq, Tk])."""
    scores = (q.float() @ k.float().transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (B, H, Tq, Tk)
    weights = torch.softmax(scores.masked_fill(hidden, float("-inf")), dim=-1)  # rows sum to 1
    return (weights @ v.float()).to(q.dtype), weights  # (B, H, Tq, D)


def causal_mask(q_positions: torch.Tensor, num_keys: int) -> torch.Tensor:
    """The causal mask of queries at ``q_positions`` over keys at positions ``0 .. num_keys - 1``.

    ``q_positions``: integer tensor [..., Tq] (e.g. [Tq] for one sequence, [B, Tq] for a batch whose
    rows sit at different positions). Returns a bool tensor [..., Tq, num_keys] that is True where the
    key lies in the query's future (``key > query``): the entries to fill with -inf before softmax.
    Every attention function in kvlib builds its mask here.
    """
    k_pos = torch.arange(num_keys, device=q_positions.device)  # (Tk,)
    return k_pos > q_positions[..., None]  # (..., Tq, Tk)


def ragged_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_positions: torch.Tensor
) -> torch.Tensor:
    """Causal attention for a batch whose rows sit at different positions (a ragged batch).

    Args:
        q: queries [B, H, Tq, D]; row b's query i sits at position ``q_positions[b, i]``.
        k, v: [B, KV, Tk, D] with ``H % KV == 0``: row b's keys at positions 0 .. Tk - 1 (rows shorter
            than Tk hold padding past their end, which no query of theirs reaches).
        q_positions: integer [B, Tq], each < Tk. Query (b, i) attends keys ``0 .. q_positions[b, i]``.

    Returns [B, H, Tq, D] in q's dtype, computed in float32 like :func:`causal_attention` (with
    ``q_positions = q_start + arange(Tq)`` in every row the two agree to float32 rounding). The caller
    trusts its own tensors here: this is the serving path, called once per layer, and it checks nothing.

    It runs PyTorch's fused ``scaled_dot_product_attention`` rather than the matmul, mask, softmax,
    matmul of :func:`causal_attention`: the fused kernel reads the keys in place (strided views of a
    paged cache's gathered blocks, GQA heads unrepeated) instead of copying them for each matmul, which
    doubled the serving engine's decode throughput on a CPU (measured with ``python -m kvlib.bench serve``).
    """
    hidden = causal_mask(q_positions, k.shape[2])[:, None]  # (B, 1, Tq, Tk): same mask for every head
    q32, k32, v32 = q.float(), k.float(), v.float()  # no copy for float32 inputs
    out = F.scaled_dot_product_attention(
        q32, k32, v32, attn_mask=~hidden, enable_gqa=q.shape[1] != k.shape[1]
    )
    return out.to(q.dtype)  # (B, H, Tq, D)


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """Repeat each KV head ``n_rep`` times: [B, num_kv_heads, T, D] -> [B, num_kv_heads * n_rep, T, D].

    Query head h uses KV head ``h // n_rep`` (``repeat_interleave`` order, as in Llama and HF).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor [B, num_kv_heads, T, D], got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"x must be [B, num_kv_heads, T, D], got shape {tuple(x.shape)}")
    n_rep = require_int("n_rep", n_rep, minimum=1)
    if n_rep == 1:
        return x
    B, Hkv, T, D = x.shape
    x = x[:, :, None, :, :].expand(B, Hkv, n_rep, T, D)  # (B, Hkv, n_rep, T, D), no copy yet
    return x.reshape(B, Hkv * n_rep, T, D)  # (B, Hkv*n_rep, T, D)
