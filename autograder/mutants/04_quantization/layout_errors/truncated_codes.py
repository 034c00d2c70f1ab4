# MISTAKE: turns (x - lo) / scale into codes with .long(), which truncates instead of rounding to the nearest
# EXPECT: truncated
import torch


def layout_errors(x, bits, group_size):
    x = x.float()
    *lead, T, D = x.shape
    L = 2**bits - 1
    G = group_size

    def fq(g, dim):
        lo = g.amin(dim=dim, keepdim=True)
        scale = (g.amax(dim=dim, keepdim=True) - lo) / L
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        codes = ((g - lo) / scale).long().clamp(0, L)
        return codes * scale + lo

    tok = fq(x.reshape(*lead, T, D // G, G), -1).reshape(x.shape)
    ch = fq(x.reshape(*lead, T // G, G, D), -2).reshape(x.shape)
    return {
        "per_token": ((x - tok).norm() / x.norm()).item(),
        "per_channel": ((x - ch).norm() / x.norm()).item(),
    }
