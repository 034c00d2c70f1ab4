# MISTAKE: adds in place into the scores it was given (the cache keeps using them)
# EXPECT: modified its input scores in place
import torch


def h2o_scores(scores: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Add the attention each kept key received to its score."""
    B, kv_heads, n = scores.shape
    G = weights.shape[1] // kv_heads
    scores += weights.float().reshape(B, kv_heads, G, weights.shape[2], n).sum(dim=(2, 3))
    return scores
