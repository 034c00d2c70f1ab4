# MISTAKE: writes the codes into a module-level buffer kept per shape, so the next call overwrites them
# EXPECT: changed after a later call
import torch

_buffers = {}


def quantize_int8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x32 = x.float()
    absmax = x32.abs().amax(dim=-1, keepdim=True)
    scale = torch.where(absmax > 0, absmax / 127, torch.ones_like(absmax))
    codes = _buffers.setdefault(tuple(x.shape), torch.empty(x.shape, dtype=torch.int8))
    codes.copy_(torch.round(x32 / scale).clamp(-127, 127))
    return codes, scale
