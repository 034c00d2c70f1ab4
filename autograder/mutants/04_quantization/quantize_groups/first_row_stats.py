# MISTAKE: takes lo and hi from the first sequence (x[0]) and uses them for the whole batch
# EXPECT: first sequence
import torch


def quantize_groups(x, group_size, bits=4):
    *lead, T, D = x.shape
    if D % group_size != 0:
        raise ValueError(f"group_size {group_size} must divide D = {D}")
    levels = 2**bits - 1
    groups = x.float().reshape(*lead, T, D // group_size, group_size)
    lo = groups[0].amin(dim=-1).clamp(max=0).expand(groups.shape[:-1])
    hi = groups[0].amax(dim=-1).clamp(min=0).expand(groups.shape[:-1])
    scale = (hi - lo) / levels
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero_point = torch.round(-lo / scale).clamp(0, levels)
    codes = (torch.round(groups / scale[..., None]) + zero_point[..., None]).clamp(0, levels)
    return codes.reshape(x.shape).to(torch.uint8), scale, zero_point.to(torch.uint8)
