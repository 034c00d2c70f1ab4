# MISTAKE: treats every bit width other than 8 as 4 instead of raising ValueError
# EXPECT: must raise ValueError
import torch


def quantize_kv(k: torch.Tensor, v: torch.Tensor, bits: int = 8):
    qmax = 127 if bits == 8 else 7
    out = []
    for x in (k, v):
        absmax = x.float().abs().amax(dim=-1, keepdim=True)
        scale = torch.where(absmax > 0, absmax / qmax, torch.ones_like(absmax))
        out += [torch.round(x.float() / scale).clamp(-qmax, qmax).to(torch.int8), scale]
    return tuple(out)
