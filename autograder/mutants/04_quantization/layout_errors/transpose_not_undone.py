# MISTAKE: quantizes x.transpose(-1, -2) per token for the channel layout, then reshapes the result back instead of transposing it
# EXPECT: without transposing
import torch


def per_token_fake_quant(x, L, G):
    *lead, T, D = x.shape
    g = x.reshape(*lead, T, D // G, G)
    lo = g.amin(dim=-1, keepdim=True)
    scale = (g.amax(dim=-1, keepdim=True) - lo) / L
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return (torch.round((g - lo) / scale).clamp(0, L) * scale + lo).reshape(x.shape)


def layout_errors(x, bits, group_size):
    x = x.float()
    L = 2**bits - 1
    tok = per_token_fake_quant(x, L, group_size)
    ch = per_token_fake_quant(x.transpose(-1, -2).contiguous(), L, group_size).reshape(x.shape)
    return {
        "per_token": ((x - tok).norm() / x.norm()).item(),
        "per_channel": ((x - ch).norm() / x.norm()).item(),
    }
