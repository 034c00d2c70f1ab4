# MISTAKE: reduces without keepdim and returns the scale as [..., T] instead of [..., T, 1]
# EXPECT: keepdim=True
import torch


def quantize_int8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x32 = x.float()
    absmax = x32.abs().amax(dim=-1)
    scale = torch.where(absmax > 0, absmax / 127, torch.ones_like(absmax))
    codes = torch.round(x32 / scale.unsqueeze(-1)).clamp(-127, 127).to(torch.int8)
    return codes, scale
