# MISTAKE: guards zero tokens with clamp(min=1e-8), so a token of zeros gets scale 1e-8 / 127, not 1.0
# EXPECT: must get scale 1.0
import torch


def quantize_int8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x32 = x.float()
    scale = x32.abs().amax(dim=-1, keepdim=True).clamp(min=1e-8) / 127
    codes = torch.round(x32 / scale).clamp(-127, 127).to(torch.int8)
    return codes, scale
