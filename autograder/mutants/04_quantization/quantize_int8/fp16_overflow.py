# MISTAKE: computes the codes as x * 127 / max|x| in the input's dtype: in fp16, x * 127 overflows to inf
# EXPECT: overflows past 65504
import torch


def quantize_int8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    absmax = x.abs().amax(dim=-1, keepdim=True)
    safe = torch.where(absmax > 0, absmax, torch.ones_like(absmax))
    codes = torch.round(x * 127 / safe).clamp(-127, 127).to(torch.int8)
    scale = torch.where(absmax > 0, absmax.float() / 127, torch.ones_like(absmax, dtype=torch.float32))
    return codes, scale
