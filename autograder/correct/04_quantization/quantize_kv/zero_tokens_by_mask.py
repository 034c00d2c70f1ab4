# VALID: a where on the quotient for all-zero tokens, whose scale is set to 1.0 afterwards (masked_fill)
import torch


def quantize_kv(k, v, bits=8):
    if bits not in {4, 8}:
        raise ValueError("bits must be 4 or 8")
    qmax = 2 ** (bits - 1) - 1

    def quantize(x):
        x = x.to(torch.float32)
        absmax = x.abs().amax(-1, keepdim=True)
        zero = absmax == 0
        scale = absmax / qmax
        q = torch.where(zero, torch.zeros_like(x), x / scale)
        scale = scale.masked_fill(zero, 1.0)
        return q.round().clamp(-qmax, qmax).to(torch.int8), scale

    return quantize(k) + quantize(v)
