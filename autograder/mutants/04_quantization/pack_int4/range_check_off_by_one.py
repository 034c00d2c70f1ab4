# MISTAKE: rejects codes above 16 instead of above 15, so a 16 spills into the neighbouring nibble
# EXPECT: raise ValueError for a code of 16
import torch


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    if codes.shape[-1] % 2 != 0:
        raise ValueError("need an even number of codes")
    if (codes > 16).any():
        raise ValueError("codes must fit in 4 bits")
    return codes[..., 0::2] | (codes[..., 1::2] << 4)
