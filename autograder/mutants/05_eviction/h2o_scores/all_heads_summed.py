# MISTAKE: sums over every query head, so each KV head gets the attention of all groups
# EXPECT: summed over all H heads
import torch


def h2o_scores(scores: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Add the attention each kept key received to its score."""
    received = weights.float().sum(dim=(1, 2))  # (B, n)
    return scores + received[:, None, :]
