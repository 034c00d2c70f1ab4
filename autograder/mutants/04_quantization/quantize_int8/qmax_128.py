# MISTAKE: divides by 128 (the int8 range has 128 negatives) and clamps to [-128, 127]
# EXPECT: not / 128
import torch


def quantize_int8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x32 = x.float()
    absmax = x32.abs().amax(dim=-1, keepdim=True)
    scale = torch.where(absmax > 0, absmax / 128, torch.ones_like(absmax))
    codes = torch.round(x32 / scale).clamp(-128, 127).to(torch.int8)
    return codes, scale
