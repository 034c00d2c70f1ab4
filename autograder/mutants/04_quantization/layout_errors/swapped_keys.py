# MISTAKE: the per-token groups are labelled "per_channel" and the per-channel ones "per_token"
# EXPECT: swapped
import torch


def layout_errors(x, bits, group_size):
    x32 = x.float()
    *lead, T, D = x.shape
    L = 2**bits - 1
    G = group_size

    def fq(g, dim):
        lo = g.amin(dim=dim, keepdim=True)
        scale = (g.amax(dim=dim, keepdim=True) - lo) / L
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        return torch.round((g - lo) / scale).clamp(0, L) * scale + lo

    a = fq(x32.reshape(*lead, T, D // G, G), -1).reshape(x.shape)
    b = fq(x32.reshape(*lead, T // G, G, D), -2).reshape(x.shape)
    n = x32.norm()
    return {"per_channel": ((x32 - a).norm() / n).item(), "per_token": ((x32 - b).norm() / n).item()}
