# MISTAKE: silently keeps the low 4 bits of every code instead of raising for a code above 15
# EXPECT: must raise ValueError for a code of
import torch


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    if codes.shape[-1] % 2 != 0:
        raise ValueError("need an even number of codes")
    codes = codes & 0x0F  # make sure every code fits in a nibble
    return codes[..., 0::2] | (codes[..., 1::2] << 4)
