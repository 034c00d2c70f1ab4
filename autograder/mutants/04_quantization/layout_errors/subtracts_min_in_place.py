# MISTAKE: subtracts each group's minimum in place on a view of x (x.float() returns x itself for float32 input), changing the caller's tensor
# EXPECT: modified its input
import torch


def layout_errors(x, bits, group_size):
    x32 = x.float()
    original = x32.clone()
    *lead, T, D = x.shape
    L = 2**bits - 1
    G = group_size

    def fq(g, dim):
        lo = g.amin(dim=dim, keepdim=True)
        scale = (g.amax(dim=dim, keepdim=True) - lo) / L
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        g -= lo  # in place, to save memory
        g /= scale
        return torch.round(g).clamp(0, L) * scale + lo

    tok = fq(x32.reshape(*lead, T, D // G, G), -1).reshape(x.shape)
    x32.copy_(original)  # undo for the second layout
    ch = fq(x32.reshape(*lead, T // G, G, D), -2).reshape(x.shape)
    return {
        "per_token": ((original - tok).norm() / original.norm()).item(),
        "per_channel": ((original - ch).norm() / original.norm()).item(),
    }
