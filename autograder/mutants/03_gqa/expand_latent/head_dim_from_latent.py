# MISTAKE: takes the head width from the latent (d_c // num_heads) instead of the up-projection's rows
# EXPECT: w_uk.shape[0] // num_heads
import torch


def expand_latent(
    c_kv: torch.Tensor, w_uk: torch.Tensor, w_uv: torch.Tensor, num_heads: int
) -> tuple[torch.Tensor, torch.Tensor]:
    b, t, d_c = c_kv.shape
    d = d_c // num_heads
    k = (c_kv @ w_uk.T).view(b, t, num_heads, d).transpose(1, 2)
    v = (c_kv @ w_uv.T).view(b, t, num_heads, d).transpose(1, 2)
    return k, v
