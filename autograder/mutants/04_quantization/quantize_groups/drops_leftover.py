# MISTAKE: never raises: with D % group_size != 0 it quantizes the whole groups and drops the rest
# EXPECT: raise ValueError
import torch


def quantize_groups(x, group_size, bits=4):
    *lead, T, D = x.shape
    levels = 2**bits - 1
    n = D // group_size
    groups = x.float()[..., : n * group_size].reshape(*lead, T, n, group_size)
    lo = groups.amin(dim=-1).clamp(max=0)
    hi = groups.amax(dim=-1).clamp(min=0)
    scale = (hi - lo) / levels
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero_point = torch.round(-lo / scale).clamp(0, levels)
    codes = (torch.round(groups / scale[..., None]) + zero_point[..., None]).clamp(0, levels)
    return codes.reshape(*lead, T, n * group_size).to(torch.uint8), scale, zero_point.to(torch.uint8)
