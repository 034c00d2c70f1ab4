# MISTAKE: fills a new float32 tensor head by head, so a bf16/fp16 input comes back as float32
# EXPECT: must keep the dtype
import torch


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    b, kv, t, d = x.shape
    out = torch.empty(b, kv * n_rep, t, d)
    for h in range(kv * n_rep):
        out[:, h] = x[:, h // n_rep]
    return out
