# MISTAKE: computes v_scale but divides the values by the keys' scale (a copy-paste slip)
# EXPECT: quantized with the keys' scale
import torch


def quantize_kv(k: torch.Tensor, v: torch.Tensor, bits: int = 8):
    if bits not in (4, 8):
        raise ValueError(f"bits must be 8 or 4, got {bits}")
    qmax = 2 ** (bits - 1) - 1
    k_max = k.float().abs().amax(dim=-1, keepdim=True)
    v_max = v.float().abs().amax(dim=-1, keepdim=True)
    k_scale = torch.where(k_max > 0, k_max / qmax, torch.ones_like(k_max))
    v_scale = torch.where(v_max > 0, v_max / qmax, torch.ones_like(v_max))
    k_codes = torch.round(k.float() / k_scale).clamp(-qmax, qmax).to(torch.int8)
    v_codes = torch.round(v.float() / k_scale).clamp(-qmax, qmax).to(torch.int8)
    return k_codes, k_scale, v_codes, v_scale
