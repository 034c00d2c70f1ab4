# MISTAKE: guards the zero scale only after dividing: a group of zeros gives 0 / 0 = NaN codes and zero_point
# EXPECT: a NaN (0 / 0 for a group of zeros) was cast to an integer dtype
import torch


def quantize_groups(x, group_size, bits=4):
    *lead, T, D = x.shape
    if D % group_size != 0:
        raise ValueError(f"group_size {group_size} must divide D = {D}")
    levels = 2**bits - 1
    groups = x.float().reshape(*lead, T, D // group_size, group_size)
    lo = groups.amin(dim=-1).clamp(max=0)
    hi = groups.amax(dim=-1).clamp(min=0)
    scale = (hi - lo) / levels
    zero_point = torch.round(-lo / scale).clamp(0, levels)
    codes = (torch.round(groups / scale[..., None]) + zero_point[..., None]).clamp(0, levels)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # a group of zeros gets scale 1.0
    return codes.reshape(x.shape).to(torch.uint8), scale, zero_point.to(torch.uint8)
