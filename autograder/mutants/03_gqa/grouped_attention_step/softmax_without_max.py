# MISTAKE: writes the softmax as exp / sum without subtracting the row max, which overflows for large scores
# EXPECT: subtract each row's max
import math

import torch


def grouped_attention_step(
    q: torch.Tensor,
    k_new: torch.Tensor,
    v_new: torch.Tensor,
    past: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    if past is None:
        k_all, v_all = k_new, v_new
    else:
        k_all = torch.cat([past[0], k_new], dim=-2)
        v_all = torch.cat([past[1], v_new], dim=-2)
    b, h, t, d = q.shape
    kv, total = k_all.shape[1], k_all.shape[-2]
    g = h // kv
    scores = q.reshape(b, kv, g * t, d) @ k_all.transpose(-2, -1) / math.sqrt(d)
    scores = scores.view(b, kv, g, t, total)
    q_pos = torch.arange(total - t, total)[:, None]
    weights = scores.exp().masked_fill(torch.arange(total)[None, :] > q_pos, 0.0)
    probs = (weights / weights.sum(dim=-1, keepdim=True)).view(b, kv, g * t, total)
    return (probs @ v_all).reshape(b, h, t, d), (k_all, v_all)
