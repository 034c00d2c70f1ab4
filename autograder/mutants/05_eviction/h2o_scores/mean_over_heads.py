# MISTAKE: averages over the query heads of a group (as if one head's view) instead of summing
# EXPECT: mean over the G query heads
import torch


def h2o_scores(scores: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Add the attention each kept key received to its score."""
    B, kv_heads, n = scores.shape
    G = weights.shape[1] // kv_heads
    grouped = weights.float().reshape(B, kv_heads, G, weights.shape[2], n)
    return scores + grouped.mean(dim=2).sum(dim=2)
