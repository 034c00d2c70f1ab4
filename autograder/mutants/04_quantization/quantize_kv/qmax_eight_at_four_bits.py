# MISTAKE: takes qmax = 8 at 4 bits (int4 reaches -8), so the largest value maps to 8, outside [-7, 7]
# EXPECT: not / 8
import torch


def quantize_kv(k: torch.Tensor, v: torch.Tensor, bits: int = 8):
    if bits not in (4, 8):
        raise ValueError(f"bits must be 8 or 4, got {bits}")
    qmax = 127 if bits == 8 else 8
    out = []
    for x in (k, v):
        absmax = x.float().abs().amax(dim=-1, keepdim=True)
        scale = torch.where(absmax > 0, absmax / qmax, torch.ones_like(absmax))
        out += [torch.round(x.float() / scale).clamp(-qmax, qmax).to(torch.int8), scale]
    return tuple(out)
