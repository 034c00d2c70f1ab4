# MISTAKE: sums over the key axis (the last one) instead of the query axis
# EXPECT: summed over the key axis
import torch


def h2o_scores(scores: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Add the attention each kept key received to its score."""
    B, kv_heads, n = scores.shape
    G = weights.shape[1] // kv_heads
    received = weights.float().reshape(B, kv_heads, G, weights.shape[2], n).sum(dim=(2, 4))
    return scores + received
