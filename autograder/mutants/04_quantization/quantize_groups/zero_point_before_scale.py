# MISTAKE: returns (codes, zero_point, scale), the order of the dequantize formula (codes - zero_point) * scale
# EXPECT: return (codes, scale, zero_point)
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
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero_point = torch.round(-lo / scale).clamp(0, levels)
    codes = (torch.round(groups / scale[..., None]) + zero_point[..., None]).clamp(0, levels)
    return codes.reshape(x.shape).to(torch.uint8), zero_point.to(torch.uint8), scale
