# MISTAKE: returns the scale in the input's dtype (fp16 for an fp16 cache) instead of float32
# EXPECT: scale must keep the dtype torch.float32
import torch


def quantize_int8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    absmax = x.abs().amax(dim=-1, keepdim=True)
    scale = torch.where(absmax > 0, absmax / 127, torch.ones_like(absmax))
    codes = torch.round(x / scale).clamp(-127, 127).to(torch.int8)
    return codes, scale
