# MISTAKE: fixes the three bugs but keeps qmax = 127 whatever bits is, so 4-bit codes use the int8 range
# EXPECT: bits is ignored
import torch


def quantize_kv(k: torch.Tensor, v: torch.Tensor, bits: int = 8):
    if bits not in (4, 8):
        raise ValueError(f"bits must be 8 or 4, got {bits}")
    qmax = 127
    out = []
    for x in (k, v):
        absmax = x.float().abs().amax(dim=-1, keepdim=True)
        scale = torch.where(absmax > 0, absmax / qmax, torch.ones_like(absmax))
        out += [torch.round(x.float() / scale).clamp(-qmax, qmax).to(torch.int8), scale]
    return tuple(out)
