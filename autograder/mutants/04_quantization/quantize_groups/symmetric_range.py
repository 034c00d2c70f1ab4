# MISTAKE: uses a symmetric range 2 max|x| around the middle code instead of [lo, hi] with a zero-point
# EXPECT: symmetric
import torch


def quantize_groups(x, group_size, bits=4):
    *lead, T, D = x.shape
    if D % group_size != 0:
        raise ValueError(f"group_size {group_size} must divide D = {D}")
    levels = 2**bits - 1
    groups = x.float().reshape(*lead, T, D // group_size, group_size)
    absmax = groups.abs().amax(dim=-1)
    scale = 2 * absmax / levels
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero_point = torch.full_like(scale, 2 ** (bits - 1))
    codes = (torch.round(groups / scale[..., None]) + zero_point[..., None]).clamp(0, levels)
    return codes.reshape(x.shape).to(torch.uint8), scale, zero_point.to(torch.uint8)
