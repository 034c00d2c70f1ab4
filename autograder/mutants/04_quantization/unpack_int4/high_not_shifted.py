# MISTAKE: masks the high nibble with 0xF0 but forgets to shift it down
# EXPECT: not shifted down
import torch


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    low = packed & 0x0F
    high = packed & 0xF0
    return torch.stack([low, high], dim=-1).reshape(*packed.shape[:-1], 2 * packed.shape[-1])
