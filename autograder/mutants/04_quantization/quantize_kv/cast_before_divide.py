# MISTAKE: keeps the printed version's x.to(torch.int8) before the division (bug A), the other two bugs fixed
# EXPECT: cast to int8 before the division
import torch


def quantize_kv(k: torch.Tensor, v: torch.Tensor, bits: int = 8):
    if bits not in (4, 8):
        raise ValueError(f"bits must be 8 or 4, got {bits}")
    qmax = 2 ** (bits - 1) - 1
    out = []
    for x in (k, v):
        absmax = x.float().abs().amax(dim=-1, keepdim=True)
        scale = torch.where(absmax > 0, absmax / qmax, torch.ones_like(absmax))
        codes = torch.round(x.to(torch.int8) / scale).clamp(-qmax, qmax).to(torch.int8)
        out += [codes, scale]
    return tuple(out)
