# MISTAKE: quantizes the values with the keys' scale and returns it as v_scale (one scale for both)
# EXPECT: v_scale equals the keys' scale
import torch


def quantize_kv(k: torch.Tensor, v: torch.Tensor, bits: int = 8):
    if bits not in (4, 8):
        raise ValueError(f"bits must be 8 or 4, got {bits}")
    qmax = 2 ** (bits - 1) - 1
    absmax = k.float().abs().amax(dim=-1, keepdim=True)
    scale = torch.where(absmax > 0, absmax / qmax, torch.ones_like(absmax))
    k_codes = torch.round(k.float() / scale).clamp(-qmax, qmax).to(torch.int8)
    v_codes = torch.round(v.float() / scale).clamp(-qmax, qmax).to(torch.int8)
    return k_codes, scale, v_codes, scale
