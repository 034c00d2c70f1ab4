# MISTAKE: divides in place; x.float() is x itself for a float32 input, so the caller's tensor changes
# EXPECT: modified its input x in place
import torch


def quantize_int8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x32 = x.float()
    absmax = x32.abs().amax(dim=-1, keepdim=True)
    scale = torch.where(absmax > 0, absmax / 127, torch.ones_like(absmax))
    codes = x32.div_(scale).round_().clamp_(-127, 127).to(torch.int8)
    return codes, scale
