# MISTAKE: keeps the printed version's scale = max|x| / qmax with no guard (bug E): 0 / 0 for a token of zeros
# EXPECT: all zero got scale
import torch


def quantize_kv(k: torch.Tensor, v: torch.Tensor, bits: int = 8):
    if bits not in (4, 8):
        raise ValueError(f"bits must be 8 or 4, got {bits}")
    qmax = 2 ** (bits - 1) - 1
    k_scale = k.float().abs().amax(dim=-1, keepdim=True) / qmax
    v_scale = v.float().abs().amax(dim=-1, keepdim=True) / qmax
    k_codes = torch.round(k.float() / k_scale).clamp(-qmax, qmax).to(torch.int8)
    v_codes = torch.round(v.float() / v_scale).clamp(-qmax, qmax).to(torch.int8)
    return k_codes, k_scale, v_codes, v_scale
