# MISTAKE: puts the even element in the high nibble and the odd one in the low nibble
# EXPECT: nibbles are swapped
import torch


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    if codes.shape[-1] % 2 != 0:
        raise ValueError("need an even number of codes")
    if (codes > 15).any():
        raise ValueError("codes must fit in 4 bits")
    return (codes[..., 0::2] << 4) | codes[..., 1::2]
