# MISTAKE: checks bits with assert, which raises AssertionError (and vanishes under python -O), not ValueError
# EXPECT: must raise ValueError
import torch


def quantize_kv(k: torch.Tensor, v: torch.Tensor, bits: int = 8):
    assert bits in (4, 8), "bits must be 8 or 4"
    qmax = 2 ** (bits - 1) - 1
    out = []
    for x in (k, v):
        absmax = x.float().abs().amax(dim=-1, keepdim=True)
        scale = torch.where(absmax > 0, absmax / qmax, torch.ones_like(absmax))
        out += [torch.round(x.float() / scale).clamp(-qmax, qmax).to(torch.int8), scale]
    return tuple(out)
