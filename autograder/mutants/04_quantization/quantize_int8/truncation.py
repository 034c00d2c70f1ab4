# MISTAKE: casts x / scale to int8 without rounding, which truncates toward zero
# EXPECT: truncated toward zero
import torch


def quantize_int8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x32 = x.float()
    absmax = x32.abs().amax(dim=-1, keepdim=True)
    scale = torch.where(absmax > 0, absmax / 127, torch.ones_like(absmax))
    codes = (x32 / scale).to(torch.int8)
    return codes, scale
