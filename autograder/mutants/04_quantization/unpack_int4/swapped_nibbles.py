# MISTAKE: takes the high nibble first, so codes[2j] and codes[2j + 1] come back swapped
# EXPECT: nibbles are swapped
import torch


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    high = packed >> 4
    low = packed & 0x0F
    return torch.stack([high, low], dim=-1).reshape(*packed.shape[:-1], 2 * packed.shape[-1])
