# MISTAKE: stores the codes as uint8 ("a byte"), which wraps every negative code around
# EXPECT: cannot hold negative codes
import torch


def quantize_int8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x32 = x.float()
    absmax = x32.abs().amax(dim=-1, keepdim=True)
    scale = torch.where(absmax > 0, absmax / 127, torch.ones_like(absmax))
    return torch.round(x32 / scale).clamp(-127, 127).to(torch.uint8), scale
