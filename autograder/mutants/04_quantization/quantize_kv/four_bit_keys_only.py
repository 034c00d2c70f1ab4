# MISTAKE: keeps the printed version's 4-bit branch (bug C): keys only, two values returned
# EXPECT: returned 2 values
import torch


def quantize_kv(k: torch.Tensor, v: torch.Tensor, bits: int = 8):
    if bits not in (4, 8):
        raise ValueError(f"bits must be 8 or 4, got {bits}")
    qmax = 2 ** (bits - 1) - 1

    def one(x):
        absmax = x.float().abs().amax(dim=-1, keepdim=True)
        scale = torch.where(absmax > 0, absmax / qmax, torch.ones_like(absmax))
        return torch.round(x.float() / scale).clamp(-qmax, qmax).to(torch.int8), scale

    if bits == 8:
        return (*one(k), *one(v))
    k_codes, k_scale = one(k)
    return k_codes, k_scale
