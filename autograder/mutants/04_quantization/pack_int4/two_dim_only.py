# MISTAKE: flattens the leading axes to pack a [rows, D] matrix and never restores them
# EXPECT: keep every leading axis
import torch


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    if codes.shape[-1] % 2 != 0:
        raise ValueError("need an even number of codes")
    if (codes > 15).any():
        raise ValueError("codes must fit in 4 bits")
    rows = codes.reshape(-1, codes.shape[-1])  # (rows, D)
    return rows[:, 0::2] | (rows[:, 1::2] << 4)
