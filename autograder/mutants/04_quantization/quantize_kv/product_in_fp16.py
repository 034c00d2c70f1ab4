# MISTAKE: computes x * qmax / max|x| in the input's dtype: fp16 rounds it, and x * 127 overflows past 65504
# EXPECT: overflows
import torch


def quantize_kv(k: torch.Tensor, v: torch.Tensor, bits: int = 8):
    if bits not in (4, 8):
        raise ValueError(f"bits must be 8 or 4, got {bits}")
    qmax = 2 ** (bits - 1) - 1
    out = []
    for x in (k, v):
        absmax = x.abs().amax(dim=-1, keepdim=True)
        safe = torch.where(absmax > 0, absmax, torch.ones_like(absmax))
        codes = torch.round(x * qmax / safe).clamp(-qmax, qmax).to(torch.int8)
        scale = torch.where(absmax > 0, absmax.float() / qmax, torch.ones_like(absmax, dtype=torch.float32))
        out += [codes, scale]
    return tuple(out)
