# MISTAKE: one scale for the whole tensor (x.abs().max()) instead of one per token
# EXPECT: one scale per token
import torch


def quantize_kv(k: torch.Tensor, v: torch.Tensor, bits: int = 8):
    if bits not in (4, 8):
        raise ValueError(f"bits must be 8 or 4, got {bits}")
    qmax = 2 ** (bits - 1) - 1
    out = []
    for x in (k, v):
        absmax = x.float().abs().max()
        scale = absmax / qmax if absmax > 0 else torch.tensor(1.0)
        out += [torch.round(x.float() / scale).clamp(-qmax, qmax).to(torch.int8), scale]
    return tuple(out)
