# MISTAKE: computes the scales from the first sequence only (x[0]) and broadcasts them over the batch
# EXPECT: first sequence
import torch


def quantize_int8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x32 = x.float()
    absmax = x32[0].abs().amax(dim=-1, keepdim=True).expand(*x.shape[:-1], 1)
    scale = torch.where(absmax > 0, absmax / 127, torch.ones_like(absmax))
    codes = torch.round(x32 / scale).clamp(-127, 127).to(torch.int8)
    return codes, scale
