# MISTAKE: flattens the bytes with .view, which fails on a non-contiguous input (a transposed tensor)
# EXPECT: view
import torch


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    flat = packed.view(-1)
    codes = torch.stack([flat & 0x0F, flat >> 4], dim=-1)
    return codes.view(*packed.shape[:-1], 2 * packed.shape[-1])
