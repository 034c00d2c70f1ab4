# MISTAKE: reshapes [B, T, H*D] straight to [B, H, T, D], mixing tokens and heads
# EXPECT: scrambled
import torch


def expand_latent(
    c_kv: torch.Tensor, w_uk: torch.Tensor, w_uv: torch.Tensor, num_heads: int
) -> tuple[torch.Tensor, torch.Tensor]:
    b, t, _ = c_kv.shape
    d = w_uk.shape[0] // num_heads
    k = (c_kv @ w_uk.T).reshape(b, num_heads, t, d)  # (B, H, T, D)
    v = (c_kv @ w_uv.T).reshape(b, num_heads, t, d)  # (B, H, T, D)
    return k, v
