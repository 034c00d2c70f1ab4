# VALID: NumPy in float64 with an einsum against a head-to-group matrix, cast back to float32 at the end
import numpy as np
import torch


def h2o_scores(scores: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Add the attention each kept key received to its score."""
    kv_heads, H = scores.shape[1], weights.shape[1]
    group_of = np.arange(H) // (H // kv_heads)
    member = (group_of[None, :] == np.arange(kv_heads)[:, None]).astype(np.float64)  # (KV, H)
    w = weights.detach().to(torch.float64).numpy()
    received = np.einsum("gh,bhtn->bgn", member, w)
    total = scores.detach().to(torch.float64).numpy() + received
    return torch.from_numpy(total).to(torch.float32)
