# MISTAKE: flattens with .view(-1) to pair neighbours, which fails on a non-contiguous (transposed) input
# EXPECT: view
import torch


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    if codes.shape[-1] % 2 != 0:
        raise ValueError("need an even number of codes")
    if (codes > 15).any():
        raise ValueError("codes must fit in 4 bits")
    flat = codes.view(-1)
    packed = flat[0::2] | (flat[1::2] << 4)
    return packed.view(*codes.shape[:-1], codes.shape[-1] // 2)
