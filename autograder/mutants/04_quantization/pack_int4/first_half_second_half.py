# MISTAKE: pairs the first half of the row with the second half instead of neighbouring elements
# EXPECT: first half of the row with the second half
import torch


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    d = codes.shape[-1]
    if d % 2 != 0:
        raise ValueError("need an even number of codes")
    if (codes > 15).any():
        raise ValueError("codes must fit in 4 bits")
    half = d // 2
    return codes[..., :half] | (codes[..., half:] << 4)
