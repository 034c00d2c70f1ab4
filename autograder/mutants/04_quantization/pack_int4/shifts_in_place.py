# MISTAKE: shifts the odd codes in place with <<=, which changes the caller's codes
# EXPECT: modified its input codes in place
import torch


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    if codes.shape[-1] % 2 != 0:
        raise ValueError("need an even number of codes")
    if (codes > 15).any():
        raise ValueError("codes must fit in 4 bits")
    high = codes[..., 1::2]
    high <<= 4
    return codes[..., 0::2] | high
