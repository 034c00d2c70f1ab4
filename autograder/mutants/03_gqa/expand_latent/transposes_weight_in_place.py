# MISTAKE: transposes the weights with the in-place t_(), changing the caller's up-projections
# EXPECT: modified its input w_uk in place
import torch


def expand_latent(
    c_kv: torch.Tensor, w_uk: torch.Tensor, w_uv: torch.Tensor, num_heads: int
) -> tuple[torch.Tensor, torch.Tensor]:
    b, t, _ = c_kv.shape
    d = w_uk.shape[0] // num_heads
    w_uk.t_()
    w_uv.t_()
    k = (c_kv @ w_uk).view(b, t, num_heads, d).transpose(1, 2)
    v = (c_kv @ w_uv).view(b, t, num_heads, d).transpose(1, 2)
    return k, v
