# MISTAKE: expands on a new axis before the heads, which tiles the heads like x.repeat
# EXPECT: wrong group
import torch


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    b, kv, t, d = x.shape
    return x[:, None].expand(b, n_rep, kv, t, d).reshape(b, n_rep * kv, t, d)
