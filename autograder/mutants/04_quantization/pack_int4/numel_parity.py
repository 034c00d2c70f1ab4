# MISTAKE: checks that the number of codes is even instead of the last axis, so [2, 5] is not refused
# EXPECT: odd last axis (codes of shape (2, 5))
import torch


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    if codes.numel() % 2 != 0:
        raise ValueError("need an even number of codes")
    if (codes > 15).any():
        raise ValueError("codes must fit in 4 bits")
    return codes[..., 0::2] | (codes[..., 1::2] << 4)
