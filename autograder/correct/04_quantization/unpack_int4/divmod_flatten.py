# VALID: % 16 and // 16 instead of masks and shifts, interleaved with stack + flatten(-2)
import torch


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    return torch.stack((packed % 16, packed // 16), dim=-1).flatten(-2)
