# MISTAKE: adds the copy axis with the in-place unsqueeze_, which changes the caller's tensor
# EXPECT: modified its input x in place
import torch


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    if n_rep == 1:
        return x
    b, kv, t, d = x.shape
    x.unsqueeze_(2)  # (B, KV, 1, T, D)
    return x.expand(b, kv, n_rep, t, d).reshape(b, kv * n_rep, t, d)
