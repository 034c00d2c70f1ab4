# MISTAKE: counts only the last query row, right for one new token but not for a prefill chunk
# EXPECT: only the last query row
import torch


def h2o_scores(scores: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Add the attention each kept key received to its score."""
    B, kv_heads, n = scores.shape
    G = weights.shape[1] // kv_heads
    last = weights[:, :, -1, :].float()  # (B, H, n)
    return scores + last.reshape(B, kv_heads, G, n).sum(dim=2)
