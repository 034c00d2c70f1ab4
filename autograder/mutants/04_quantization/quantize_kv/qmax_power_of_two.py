# MISTAKE: believes statement D and takes qmax = 2**(bits - 1): 128 at 8 bits, 8 at 4 bits
# EXPECT: not / 128
import torch


def quantize_kv(k: torch.Tensor, v: torch.Tensor, bits: int = 8):
    if bits not in (4, 8):
        raise ValueError(f"bits must be 8 or 4, got {bits}")
    qmax = 2 ** (bits - 1)
    out = []
    for x in (k, v):
        absmax = x.float().abs().amax(dim=-1, keepdim=True)
        scale = torch.where(absmax > 0, absmax / qmax, torch.ones_like(absmax))
        out += [torch.round(x.float() / scale).clamp(-qmax, qmax - 1).to(torch.int8), scale]
    return tuple(out)
