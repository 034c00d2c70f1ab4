# MISTAKE: uses the key up-projection for the values too
# EXPECT: other up-projection
import torch


def expand_latent(
    c_kv: torch.Tensor, w_uk: torch.Tensor, w_uv: torch.Tensor, num_heads: int
) -> tuple[torch.Tensor, torch.Tensor]:
    b, t, _ = c_kv.shape
    d = w_uk.shape[0] // num_heads
    k = (c_kv @ w_uk.T).view(b, t, num_heads, d).transpose(1, 2)  # (B, H, T, D)
    v = (c_kv @ w_uk.T).view(b, t, num_heads, d).transpose(1, 2)  # (B, H, T, D)
    return k, v
