# MISTAKE: divides the range by 2**bits (the number of codes) instead of L = 2**bits - 1 steps
# EXPECT: not / 2**bits
import torch


def quantize_groups(x, group_size, bits=4):
    *lead, T, D = x.shape
    if D % group_size != 0:
        raise ValueError(f"group_size {group_size} must divide D = {D}")
    levels = 2**bits - 1
    groups = x.float().reshape(*lead, T, D // group_size, group_size)
    lo = groups.amin(dim=-1).clamp(max=0)
    hi = groups.amax(dim=-1).clamp(min=0)
    scale = (hi - lo) / 2**bits
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero_point = torch.round(-lo / scale).clamp(0, levels)
    codes = (torch.round(groups / scale[..., None]) + zero_point[..., None]).clamp(0, levels)
    return codes.reshape(x.shape).to(torch.uint8), scale, zero_point.to(torch.uint8)
