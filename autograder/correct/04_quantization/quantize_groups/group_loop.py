# VALID: a Python loop over the groups (torch.split along the channels), aminmax, codes as round(x / s + zp)
import torch


def quantize_groups(x: torch.Tensor, group_size: int, bits: int = 4):
    if x.shape[-1] % group_size != 0:
        raise ValueError("group_size must divide the last dimension")
    top = 2**bits - 1
    codes, scales, zero_points = [], [], []
    for chunk in torch.split(x.to(torch.float32), group_size, dim=-1):
        lo, hi = torch.aminmax(chunk, dim=-1, keepdim=True)
        lo, hi = torch.minimum(lo, torch.zeros_like(lo)), torch.maximum(hi, torch.zeros_like(hi))
        s = (hi - lo) / top
        s[s == 0] = 1.0
        zp = torch.clamp(torch.round(-lo / s), 0, top)
        codes.append(torch.clamp(torch.round(chunk / s + zp), 0, top).to(torch.uint8))
        scales.append(s)
        zero_points.append(zp.to(torch.uint8))
    return torch.cat(codes, dim=-1), torch.cat(scales, dim=-1), torch.cat(zero_points, dim=-1)
