# MISTAKE: stacks low and high on a new last axis but never merges it into the code axis
# EXPECT: reshape to [..., 2 * n]
import torch


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    return torch.stack([packed & 0x0F, packed >> 4], dim=-1)
