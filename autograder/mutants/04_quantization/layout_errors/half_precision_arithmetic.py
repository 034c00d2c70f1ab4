# MISTAKE: computes in the input's dtype (no x.float()), so fp16/bf16 keys are quantized and measured in 16 bits
# EXPECT: float32
import torch


def layout_errors(x, bits, group_size):
    *lead, T, D = x.shape
    L = 2**bits - 1
    G = group_size

    def fq(g, dim):
        lo = g.amin(dim=dim, keepdim=True)
        scale = (g.amax(dim=dim, keepdim=True) - lo) / L
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        return torch.round((g - lo) / scale).clamp(0, L) * scale + lo

    tok = fq(x.reshape(*lead, T, D // G, G), -1).reshape(x.shape)
    ch = fq(x.reshape(*lead, T // G, G, D), -2).reshape(x.shape)
    return {
        "per_token": ((x - tok).norm() / x.norm()).item(),
        "per_channel": ((x - ch).norm() / x.norm()).item(),
    }
