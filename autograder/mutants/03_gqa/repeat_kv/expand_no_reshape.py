# MISTAKE: expands to [B, KV, n_rep, T, D] but forgets to merge the two head axes
# EXPECT: reshape
import torch


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    b, kv, t, d = x.shape
    return x[:, :, None, :, :].expand(b, kv, n_rep, t, d)
