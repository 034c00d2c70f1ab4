# VALID: a Python loop over the group index of a flattened [N, T, D] copy (slices, min/max with torch.where guards), error accumulated as sums of squares
import math

import torch


def layout_errors(x: torch.Tensor, bits: int, group_size: int) -> dict[str, float]:
    T, D = x.shape[-2:]
    flat = x.reshape(-1, T, D).float()
    levels = 2**bits - 1
    G = group_size

    def squared_error(group: torch.Tensor, dim: int) -> float:
        lo = group.min(dim=dim, keepdim=True).values
        hi = group.max(dim=dim, keepdim=True).values
        scale = torch.where(hi > lo, (hi - lo) / levels, torch.ones_like(hi))
        x_hat = torch.round((group - lo) / scale).clamp(0, levels) * scale + lo
        return float(((group - x_hat) ** 2).sum())

    token_sq = sum(squared_error(flat[:, :, g * G : (g + 1) * G], -1) for g in range(D // G))
    channel_sq = sum(squared_error(flat[:, g * G : (g + 1) * G, :], 1) for g in range(T // G))
    total = float((flat**2).sum())
    return {"per_token": math.sqrt(token_sq / total), "per_channel": math.sqrt(channel_sq / total)}
