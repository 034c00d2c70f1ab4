# MISTAKE: assumes there is something to repeat and returns nothing useful for n_rep == 1 (MHA)
# EXPECT: n_rep=1
import torch


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    if n_rep == 1:
        return None
    return x.repeat_interleave(n_rep, dim=1)
