# MISTAKE: written for a batch of one: drops the batch axis with [0] and puts a batch of 1 back at the end
# EXPECT: right for a single sequence but not for a batch
import math

import torch


def grouped_attention_step(
    q: torch.Tensor,
    k_new: torch.Tensor,
    v_new: torch.Tensor,
    past: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    q, k_new, v_new = q[0], k_new[0], v_new[0]  # (H, T, D), (KV, T, D): one sequence
    if past is None:
        k_all, v_all = k_new, v_new
    else:
        k_all = torch.cat([past[0][0], k_new], dim=-2)  # (KV, P+T, D)
        v_all = torch.cat([past[1][0], v_new], dim=-2)
    h, t, d = q.shape
    kv, total = k_all.shape[0], k_all.shape[-2]
    g = h // kv
    scores = q.reshape(kv, g * t, d) @ k_all.transpose(-2, -1) / math.sqrt(d)
    scores = scores.view(kv, g, t, total)
    q_pos = torch.arange(total - t, total)[:, None]
    scores = scores.masked_fill(torch.arange(total)[None, :] > q_pos, float("-inf"))
    probs = torch.softmax(scores, dim=-1).view(kv, g * t, total)
    out = (probs @ v_all).reshape(h, t, d)
    return out[None], (k_all[None], v_all[None])
