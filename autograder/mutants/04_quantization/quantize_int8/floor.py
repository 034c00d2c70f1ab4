# MISTAKE: rounds x / scale down with torch.floor instead of to the nearest code
# EXPECT: torch.floor
import torch


def quantize_int8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x32 = x.float()
    absmax = x32.abs().amax(dim=-1, keepdim=True)
    scale = torch.where(absmax > 0, absmax / 127, torch.ones_like(absmax))
    codes = torch.floor(x32 / scale).clamp(-127, 127).to(torch.int8)
    return codes, scale
