# MISTAKE: keeps the cache in a preallocated module-level buffer and returns views of it, so the next sequence overwrites what an earlier call returned
# EXPECT: changed after a later call
import math

import torch

_BUFFERS = {}  # (B, KV, D, dtype) -> (keys, values) with room for 512 tokens: no torch.cat per step


def grouped_attention_step(
    q: torch.Tensor,
    k_new: torch.Tensor,
    v_new: torch.Tensor,
    past: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    b, kv, t, d = k_new.shape
    p = 0 if past is None else past[0].shape[-2]
    key = (b, kv, d, k_new.dtype)
    if key not in _BUFFERS:
        _BUFFERS[key] = (torch.zeros(b, kv, 512, d, dtype=k_new.dtype), torch.zeros(b, kv, 512, d, dtype=k_new.dtype))
    k_buf, v_buf = _BUFFERS[key]
    if past is not None:
        k_buf[:, :, :p] = past[0]
        v_buf[:, :, :p] = past[1]
    k_buf[:, :, p : p + t] = k_new
    v_buf[:, :, p : p + t] = v_new
    k_all, v_all = k_buf[:, :, : p + t], v_buf[:, :, : p + t]  # views: no copy
    h, total = q.shape[1], p + t
    g = h // kv
    scores = q.reshape(b, kv, g * t, d) @ k_all.transpose(-2, -1) / math.sqrt(d)
    scores = scores.view(b, kv, g, t, total)
    q_pos = torch.arange(p, total)[:, None]
    scores = scores.masked_fill(torch.arange(total)[None, :] > q_pos, float("-inf"))
    probs = torch.softmax(scores, dim=-1).view(b, kv, g * t, total)
    return (probs @ v_all).reshape(b, h, t, d), (k_all, v_all)
