# MISTAKE: uses x.repeat, which tiles the heads (kv0, kv1, kv0, kv1) instead of grouping them
# EXPECT: repeat_interleave
import torch


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    return x.repeat(1, n_rep, 1, 1)
