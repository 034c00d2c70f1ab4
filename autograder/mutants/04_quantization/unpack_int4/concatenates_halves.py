# MISTAKE: concatenates all low nibbles then all high nibbles instead of interleaving them
# EXPECT: interleave
import torch


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    return torch.cat([packed & 0x0F, packed >> 4], dim=-1)
