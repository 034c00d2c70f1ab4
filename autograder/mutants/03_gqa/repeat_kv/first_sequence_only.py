# MISTAKE: drops the batch axis with x[0] (written for a batch of one), so only the first sequence comes back
# EXPECT: kept only the first sequence
import torch


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    heads = x[0]  # (KV, T, D)
    return heads.repeat_interleave(n_rep, dim=0).unsqueeze(0)  # (1, KV * n_rep, T, D)
