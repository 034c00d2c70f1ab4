# MISTAKE: unpacks x.shape into B, KV, T, D, so only 4-D cache tensors work
# EXPECT: any number of leading axes
import torch


def quantize_int8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    B, KV, T, D = x.shape
    x32 = x.float().reshape(B * KV * T, D)
    absmax = x32.abs().amax(dim=1, keepdim=True)
    scale = torch.where(absmax > 0, absmax / 127, torch.ones_like(absmax))
    codes = torch.round(x32 / scale).clamp(-127, 127).to(torch.int8)
    return codes.reshape(B, KV, T, D), scale.reshape(B, KV, T, 1)
