# MISTAKE: reads the low nibble, then shifts the caller's tensor in place to get the high one
# EXPECT: modified its input packed in place
import torch


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    low = packed & 0x0F
    packed >>= 4
    return torch.stack([low, packed], dim=-1).reshape(*packed.shape[:-1], 2 * packed.shape[-1])
