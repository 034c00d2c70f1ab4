# MISTAKE: scales the queries in place (q /= sqrt(D)), changing the caller's tensor
# EXPECT: modified its input q in place
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
    q /= math.sqrt(d)  # scale once, on the small tensor
    scores = q.reshape(b, kv, g * t, d) @ k_all.transpose(-2, -1)  # (B, KV, G*T, P+T)
    scores = scores.view(b, kv, g, t, total)
    q_pos = torch.arange(total - t, total)[:, None]
    scores = scores.masked_fill(torch.arange(total)[None, :] > q_pos, float("-inf"))
    probs = torch.softmax(scores, dim=-1).view(b, kv, g * t, total)
    return (probs @ v_all).reshape(b, h, t, d), (k_all, v_all)
