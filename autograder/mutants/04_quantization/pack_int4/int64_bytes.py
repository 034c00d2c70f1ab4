# MISTAKE: computes in int64 to be safe from overflow and returns int64 instead of uint8 bytes
# EXPECT: torch.uint8
import torch


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    if codes.shape[-1] % 2 != 0:
        raise ValueError("need an even number of codes")
    if (codes > 15).any():
        raise ValueError("codes must fit in 4 bits")
    wide = codes.long()
    return wide[..., 0::2] + 16 * wide[..., 1::2]
