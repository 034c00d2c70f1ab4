# MISTAKE: writes the visible example's group size (2) into the code instead of using n_rep
# EXPECT: use n_rep
import torch


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    if n_rep == 1:
        return x
    b, kv, t, d = x.shape
    return x[:, :, None].expand(b, kv, 2, t, d).reshape(b, kv * 2, t, d)
