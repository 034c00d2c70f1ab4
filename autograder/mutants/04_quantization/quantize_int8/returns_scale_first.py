# MISTAKE: returns (scale, codes), the order a dequantize(scale, codes) helper would take
# EXPECT: in the order (codes, scale)
import torch


def quantize_int8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x32 = x.float()
    absmax = x32.abs().amax(dim=-1, keepdim=True)
    scale = torch.where(absmax > 0, absmax / 127, torch.ones_like(absmax))
    codes = torch.round(x32 / scale).clamp(-127, 127).to(torch.int8)
    return scale, codes
