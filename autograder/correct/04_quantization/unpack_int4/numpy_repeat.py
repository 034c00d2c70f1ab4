# VALID: NumPy: repeat every byte twice, then shift by 0 and 4 alternately
import numpy as np
import torch


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    twice = np.repeat(packed.numpy(), 2, axis=-1)
    shifts = np.tile(np.array([0, 4], dtype=np.uint8), packed.shape[-1])
    return torch.from_numpy((twice >> shifts) & 0x0F)
