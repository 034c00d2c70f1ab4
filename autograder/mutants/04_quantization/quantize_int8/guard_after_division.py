# MISTAKE: guards the zero scale only after dividing: a token of zeros gives 0 / 0 = NaN, cast to int8
# EXPECT: a NaN (0 / 0 for a token of zeros) was cast to an integer dtype
import torch


def quantize_int8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x32 = x.float()
    scale = x32.abs().amax(dim=-1, keepdim=True) / 127
    codes = torch.round(x32 / scale).clamp(-127, 127).to(torch.int8)
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)  # a token of zeros gets scale 1.0
    return codes, scale
