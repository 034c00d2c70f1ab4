# MISTAKE: quantizes each group symmetrically around 0 with max|x| instead of mapping [min, max] onto 0..L
# EXPECT: symmetric range
import torch


def layout_errors(x, bits, group_size):
    x = x.float()
    *lead, T, D = x.shape
    L = 2**bits - 1
    G = group_size

    def fq(g, dim):
        m = g.abs().amax(dim=dim, keepdim=True)
        scale = 2 * m / L
        scale[scale == 0] = 1.0
        return torch.round((g + m) / scale).clamp(0, L) * scale - m

    tok = fq(x.reshape(*lead, T, D // G, G), -1).reshape(x.shape)
    ch = fq(x.reshape(*lead, T // G, G, D), -2).reshape(x.shape)
    return {
        "per_token": float((x - tok).norm() / x.norm()),
        "per_channel": float((x - ch).norm() / x.norm()),
    }
