# MISTAKE: moves the cast after the division but forgets torch.round, so .to(torch.int8) truncates
# EXPECT: truncated toward zero
import torch


def quantize_kv(k: torch.Tensor, v: torch.Tensor, bits: int = 8):
    if bits not in (4, 8):
        raise ValueError(f"bits must be 8 or 4, got {bits}")
    qmax = 2 ** (bits - 1) - 1
    out = []
    for x in (k, v):
        absmax = x.float().abs().amax(dim=-1, keepdim=True)
        scale = torch.where(absmax > 0, absmax / qmax, torch.ones_like(absmax))
        out += [(x.float() / scale).clamp(-qmax, qmax).to(torch.int8), scale]
    return tuple(out)
