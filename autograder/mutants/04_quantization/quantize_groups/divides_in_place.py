# MISTAKE: divides the groups in place; x.float() is x itself for float32 input, so the caller's tensor changes
# EXPECT: modified its input x in place
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
    codes = groups.div_(scale[..., None]).round_().add_(zero_point[..., None]).clamp_(0, levels)
    return codes.reshape(x.shape).to(torch.uint8), scale, zero_point.to(torch.uint8)
