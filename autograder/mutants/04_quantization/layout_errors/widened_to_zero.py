# MISTAKE: reuses exercise 2's range widened to include 0 (lo = min(min, 0), hi = max(max, 0)) instead of KIVI's [min, max]
# EXPECT: widen the range
import torch


def layout_errors(x, bits, group_size):
    x = x.float()
    *lead, T, D = x.shape
    L = 2**bits - 1
    G = group_size

    def fq(g, dim):
        lo = g.amin(dim=dim, keepdim=True).clamp(max=0)
        hi = g.amax(dim=dim, keepdim=True).clamp(min=0)
        scale = (hi - lo) / L
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        return torch.round((g - lo) / scale).clamp(0, L) * scale + lo

    tok = fq(x.reshape(*lead, T, D // G, G), -1).reshape(x.shape)
    ch = fq(x.reshape(*lead, T // G, G, D), -2).reshape(x.shape)
    return {
        "per_token": ((x - tok).norm() / x.norm()).item(),
        "per_channel": ((x - ch).norm() / x.norm()).item(),
    }
