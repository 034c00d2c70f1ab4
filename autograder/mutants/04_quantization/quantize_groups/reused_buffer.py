# MISTAKE: writes the codes into a module-level buffer kept per shape, so the next call overwrites them
# EXPECT: changed after a later call
import torch


_buffers = {}


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
    codes = _buffers.setdefault(tuple(x.shape), torch.empty(x.shape, dtype=torch.uint8))
    codes.copy_((torch.round(groups / scale[..., None]) + zero_point[..., None]).clamp(0, levels).reshape(x.shape))
    return codes, scale, zero_point.to(torch.uint8)
