# MISTAKE: inserts the copy axis after the sequence axis, so the reshape interleaves positions across heads
# EXPECT: wrong axis
import torch


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    b, kv, t, d = x.shape
    return x[:, :, :, None, :].expand(b, kv, t, n_rep, d).reshape(b, kv * n_rep, t, d)
