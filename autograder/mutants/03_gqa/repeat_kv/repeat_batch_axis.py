# MISTAKE: repeats along the batch axis instead of the head axis
# EXPECT: batch axis
import torch


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    return x.repeat_interleave(n_rep, dim=0)
