# MISTAKE: merges the expanded head axes with .view, which cannot merge an expanded (stride-0) axis
# EXPECT: use `.reshape`
import torch


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    b, kv, t, d = x.shape
    return x[:, :, None, :, :].expand(b, kv, n_rep, t, d).view(b, kv * n_rep, t, d)
