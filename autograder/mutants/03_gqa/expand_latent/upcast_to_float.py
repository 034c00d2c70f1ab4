# MISTAKE: converts to float32 for the matmul and returns float32 keys/values for bf16 inputs
# EXPECT: must keep the dtype
import torch


def expand_latent(
    c_kv: torch.Tensor, w_uk: torch.Tensor, w_uv: torch.Tensor, num_heads: int
) -> tuple[torch.Tensor, torch.Tensor]:
    b, t, _ = c_kv.shape
    d = w_uk.shape[0] // num_heads
    c = c_kv.float()
    k = (c @ w_uk.float().T).view(b, t, num_heads, d).transpose(1, 2)
    v = (c @ w_uv.float().T).view(b, t, num_heads, d).transpose(1, 2)
    return k, v
