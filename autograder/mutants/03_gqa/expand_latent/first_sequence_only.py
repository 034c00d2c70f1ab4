# MISTAKE: written for a batch of one: projects c_kv[0] and views the result with a batch of 1
# EXPECT: first sequence
import torch


def expand_latent(
    c_kv: torch.Tensor, w_uk: torch.Tensor, w_uv: torch.Tensor, num_heads: int
) -> tuple[torch.Tensor, torch.Tensor]:
    t = c_kv.shape[1]
    d = w_uk.shape[0] // num_heads
    c = c_kv[0]  # (T, d_c)
    k = (c @ w_uk.T).view(1, t, num_heads, d).transpose(1, 2)
    v = (c @ w_uv.T).view(1, t, num_heads, d).transpose(1, 2)
    return k, v
