# MISTAKE: converts to float32 "to be safe" before repeating and never converts back
# EXPECT: must keep the dtype
import torch


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    x = x.float()
    if n_rep == 1:
        return x
    return torch.repeat_interleave(x, n_rep, dim=1)
