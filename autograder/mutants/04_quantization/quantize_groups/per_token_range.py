# MISTAKE: computes one range per token and repeats it for every group: right only when group_size == D
# EXPECT: group_size == D
import torch


def quantize_groups(x, group_size, bits=4):
    *lead, T, D = x.shape
    if D % group_size != 0:
        raise ValueError(f"group_size {group_size} must divide D = {D}")
    levels = 2**bits - 1
    x32 = x.float()
    lo = x32.amin(dim=-1, keepdim=True).clamp(max=0)
    hi = x32.amax(dim=-1, keepdim=True).clamp(min=0)
    scale = (hi - lo) / levels
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero_point = torch.round(-lo / scale).clamp(0, levels)
    codes = (torch.round(x32 / scale) + zero_point).clamp(0, levels)
    n = D // group_size
    return codes.to(torch.uint8), scale.expand(*lead, T, n).clone(), zero_point.expand(*lead, T, n).to(torch.uint8)
