# MISTAKE: computes in float64 for accuracy and returns float64 keys/values
# EXPECT: must keep the dtype
import torch


def expand_latent(
    c_kv: torch.Tensor, w_uk: torch.Tensor, w_uv: torch.Tensor, num_heads: int
) -> tuple[torch.Tensor, torch.Tensor]:
    b, t, _ = c_kv.shape
    d = w_uk.shape[0] // num_heads
    k = (c_kv.double() @ w_uk.double().T).view(b, t, num_heads, d).transpose(1, 2)
    v = (c_kv.double() @ w_uv.double().T).view(b, t, num_heads, d).transpose(1, 2)
    return k, v
