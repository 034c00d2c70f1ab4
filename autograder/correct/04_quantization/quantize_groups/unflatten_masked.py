# VALID: unflatten, the range from relu of max and -min, masked_fill for empty ranges, codes clamped in int32
import torch


def quantize_groups(x: torch.Tensor, group_size: int, bits: int = 4):
    D = x.size(-1)
    if D % group_size:
        raise ValueError(f"D={D} is not a multiple of group_size={group_size}")
    L = (1 << bits) - 1
    g = x.float().unflatten(-1, (D // group_size, group_size))
    neg = torch.relu(-g.min(-1).values)  # -lo >= 0
    pos = torch.relu(g.max(-1).values)
    span = neg + pos
    scale = (span / L).masked_fill(span == 0, 1.0)
    zero_point = torch.round(neg / scale).int().clamp(0, L)
    q = torch.round(g / scale.unsqueeze(-1)).int() + zero_point.unsqueeze(-1)
    return q.clamp(0, L).flatten(-2).byte(), scale, zero_point.byte()
