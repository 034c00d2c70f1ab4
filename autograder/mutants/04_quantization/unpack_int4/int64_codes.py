# MISTAKE: widens the bytes to int64 for the arithmetic and returns int64 codes instead of uint8
# EXPECT: torch.uint8
import torch


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    wide = packed.long()
    codes = torch.stack([wide % 16, wide // 16], dim=-1)
    return codes.reshape(*packed.shape[:-1], 2 * packed.shape[-1])
