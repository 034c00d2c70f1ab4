# MISTAKE: adds in the weights' dtype and converts at the end, so large scores lose precision in fp16/bf16
# EXPECT: rounded to
import torch


def h2o_scores(scores: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Add the attention each kept key received to its score."""
    B, kv_heads, n = scores.shape
    G = weights.shape[1] // kv_heads
    received = weights.reshape(B, kv_heads, G, weights.shape[2], n).sum(dim=(2, 3))
    return (scores.to(weights.dtype) + received).float()
