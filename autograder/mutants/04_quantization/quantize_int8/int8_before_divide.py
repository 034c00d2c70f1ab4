# MISTAKE: casts x to int8 before dividing by the scale (the circulating bug), truncating every value
# EXPECT: cast to int8 before the division
import torch


def quantize_int8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    absmax = x.float().abs().amax(dim=-1, keepdim=True)
    scale = torch.where(absmax > 0, absmax / 127, torch.ones_like(absmax))
    codes = torch.round(x.to(torch.int8) / scale).clamp(-127, 127).to(torch.int8)
    return codes, scale
