# VALID: a Python loop over the tokens of a flattened [N, D] view, aminmax per token, no keepdim
import torch


def quantize_int8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    rows = x.reshape(-1, x.shape[-1]).to(torch.float32)
    codes = torch.empty(rows.shape, dtype=torch.int8)
    scale = torch.empty(rows.shape[0], 1)
    for i, row in enumerate(rows):
        lo, hi = torch.aminmax(row)
        biggest = max(-lo.item(), hi.item())
        s = torch.tensor(biggest, dtype=torch.float32) / 127 if biggest > 0 else torch.tensor(1.0)
        scale[i, 0] = s
        codes[i] = torch.round(row / s).clamp(-127, 127).to(torch.int8)
    return codes.reshape(x.shape), scale.reshape(*x.shape[:-1], 1)
