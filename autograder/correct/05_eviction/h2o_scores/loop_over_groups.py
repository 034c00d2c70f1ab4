# VALID: a Python loop over the KV heads, slicing each group's query heads, stacked at the end
import torch


def h2o_scores(scores: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Add the attention each kept key received to its score."""
    kv_heads = scores.shape[1]
    G = weights.shape[1] // kv_heads
    per_group = []
    for g in range(kv_heads):
        block = weights[:, g * G : (g + 1) * G].to(torch.float32)  # (B, G, T, n)
        per_group.append(block.sum(dim=1).sum(dim=1))  # (B, n)
    return scores.clone() + torch.stack(per_group, dim=1)
