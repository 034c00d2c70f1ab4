# MISTAKE: groups the query heads as h % KV (reshape to (G, KV)), not in contiguous blocks of G
# EXPECT: h % KV
import torch


def h2o_scores(scores: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Add the attention each kept key received to its score."""
    B, kv_heads, n = scores.shape
    G = weights.shape[1] // kv_heads
    received = weights.float().reshape(B, G, kv_heads, weights.shape[2], n).sum(dim=(1, 3))
    return scores + received
