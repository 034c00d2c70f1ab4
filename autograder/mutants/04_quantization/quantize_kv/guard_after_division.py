# MISTAKE: fixes bug E after the division: a token of zeros still gives 0 / 0 = NaN, cast to int8
# EXPECT: a NaN (0 / 0 for a token of zeros) was cast to an integer dtype
import torch


def quantize_kv(k: torch.Tensor, v: torch.Tensor, bits: int = 8):
    if bits not in (4, 8):
        raise ValueError(f"bits must be 8 or 4, got {bits}")
    qmax = 2 ** (bits - 1) - 1
    out = []
    for x in (k, v):
        x = x.float()
        scale = x.abs().amax(dim=-1, keepdim=True) / qmax
        codes = torch.round(x / scale).clamp(-qmax, qmax).to(torch.int8)
        scale = torch.where(scale == 0, torch.ones_like(scale), scale)  # bug E: scale 1.0 for zeros
        out += [codes, scale]
    return tuple(out)
