# MISTAKE: returns the values' results first, (v_codes, v_scale, k_codes, k_scale)
# EXPECT: swapped
import torch


def quantize_kv(k: torch.Tensor, v: torch.Tensor, bits: int = 8):
    if bits not in (4, 8):
        raise ValueError(f"bits must be 8 or 4, got {bits}")
    qmax = 2 ** (bits - 1) - 1
    out = {}
    for name, x in (("k", k), ("v", v)):
        absmax = x.float().abs().amax(dim=-1, keepdim=True)
        scale = torch.where(absmax > 0, absmax / qmax, torch.ones_like(absmax))
        out[name] = (torch.round(x.float() / scale).clamp(-qmax, qmax).to(torch.int8), scale)
    return (*out["v"], *out["k"])
