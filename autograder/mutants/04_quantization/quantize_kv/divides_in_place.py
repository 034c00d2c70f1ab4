# MISTAKE: divides in place after x = x.float(), which for float32 input is the caller's own tensor
# EXPECT: modified its input k in place
import torch


def quantize_kv(k: torch.Tensor, v: torch.Tensor, bits: int = 8):
    if bits not in (4, 8):
        raise ValueError(f"bits must be 8 or 4, got {bits}")
    qmax = 2 ** (bits - 1) - 1
    out = []
    for x in (k, v):
        x = x.float()
        absmax = x.abs().amax(dim=-1, keepdim=True)
        scale = torch.where(absmax > 0, absmax / qmax, torch.ones_like(absmax))
        x /= scale
        out += [torch.round(x).clamp(-qmax, qmax).to(torch.int8), scale]
    return tuple(out)
