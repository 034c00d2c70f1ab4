# MISTAKE: repeat_interleave along the sequence axis instead of the head axis
# EXPECT: sequence axis
import torch


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    return torch.repeat_interleave(x, n_rep, dim=2)
