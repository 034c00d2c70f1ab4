# MISTAKE: never checks that the last axis is even; an odd one is packed or crashes instead of a ValueError
# EXPECT: must raise ValueError for an odd last axis
import torch


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    if (codes > 15).any():
        raise ValueError("codes must fit in 4 bits")
    return codes[..., 0::2] | (codes[..., 1::2] << 4)
