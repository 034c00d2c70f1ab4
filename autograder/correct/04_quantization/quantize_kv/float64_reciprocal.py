# VALID: float64, multiplies by qmax / max|x| instead of dividing by the scale; scale cast to float32
import torch


def quantize_kv(k: torch.Tensor, v: torch.Tensor, bits: int = 8):
    if bits != 8 and bits != 4:
        raise ValueError("only 8 and 4 bits")
    qmax = (1 << (bits - 1)) - 1
    results = []
    for x in (k, v):
        x64 = x.double()
        absmax = x64.abs().max(dim=-1, keepdim=True).values
        safe = absmax.masked_fill(absmax == 0, qmax)  # scale 1.0 for a token of zeros
        codes = torch.round(x64 * (qmax / safe)).clamp(-qmax, qmax).to(torch.int8)
        results.extend([codes, (safe / qmax).float()])
    return tuple(results)
