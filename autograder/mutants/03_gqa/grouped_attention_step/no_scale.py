# MISTAKE: forgets to divide the scores by sqrt(head_dim)
# EXPECT: sqrt(head_dim)
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
        k_all = torch.cat([past[0], k_new], dim=-2)  # (B, KV, P+T, D)
        v_all = torch.cat([past[1], v_new], dim=-2)
    b, h, t, d = q.shape
    kv, total = k_all.shape[1], k_all.shape[-2]
    g = h // kv  # query heads per key/value head
    # Stack the G query heads of group j as rows of ONE matmul against key/value head j (no copies):
    qg = q.reshape(b, kv, g * t, d)  # (B, KV, G*T, D): head h = j*G + i -> group j, rows i*T .. i*T+T-1
    scores = qg @ k_all.transpose(-2, -1)  # (B, KV, G*T, P+T)
    scores = scores.view(b, kv, g, t, total)  # (B, KV, G, T, P+T)
    p = total - t  # tokens cached before this step
    q_pos = torch.arange(p, p + t)[:, None]  # (T, 1): absolute positions of the new tokens
    k_pos = torch.arange(total)[None, :]  # (1, P+T)
    scores = scores.masked_fill(k_pos > q_pos, float("-inf"))
    probs = torch.softmax(scores, dim=-1).view(b, kv, g * t, total)  # (B, KV, G*T, P+T)
    out = probs @ v_all  # (B, KV, G*T, D)
    return out.reshape(b, h, t, d), (k_all, v_all)  # (B, H, T, D)
