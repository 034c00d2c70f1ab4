# MISTAKE: converts to int8 before shifting, so bytes of 128 and above get a sign-extended high nibble
# EXPECT: sign bit
import torch


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    p = packed.to(torch.int8)
    low = p & 0x0F
    high = p >> 4
    codes = torch.stack([low, high], dim=-1).reshape(*packed.shape[:-1], 2 * packed.shape[-1])
    return codes.to(torch.uint8)
