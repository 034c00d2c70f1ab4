# MISTAKE: guards the zero token with clamp(min=1e-8) instead of the scale 1.0 the docstring asks for
# EXPECT: must get scale 1.0
import torch


def quantize_kv(k: torch.Tensor, v: torch.Tensor, bits: int = 8):
    if bits not in (4, 8):
        raise ValueError(f"bits must be 8 or 4, got {bits}")
    qmax = 2 ** (bits - 1) - 1
    out = []
    for x in (k, v):
        scale = (x.float().abs().amax(dim=-1, keepdim=True) / qmax).clamp(min=1e-8)
        out += [torch.round(x.float() / scale).clamp(-qmax, qmax).to(torch.int8), scale]
    return tuple(out)
