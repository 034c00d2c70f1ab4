# MISTAKE: hard-codes 15 levels (4 bits) and ignores the bits argument
# EXPECT: bits is ignored
import torch


def quantize_groups(x, group_size, bits=4):
    *lead, T, D = x.shape
    if D % group_size != 0:
        raise ValueError(f"group_size {group_size} must divide D = {D}")
    groups = x.float().reshape(*lead, T, D // group_size, group_size)
    lo = groups.amin(dim=-1).clamp(max=0)
    hi = groups.amax(dim=-1).clamp(min=0)
    scale = (hi - lo) / 15
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero_point = torch.round(-lo / scale).clamp(0, 15)
    codes = (torch.round(groups / scale[..., None]) + zero_point[..., None]).clamp(0, 15)
    return codes.reshape(x.shape).to(torch.uint8), scale, zero_point.to(torch.uint8)
