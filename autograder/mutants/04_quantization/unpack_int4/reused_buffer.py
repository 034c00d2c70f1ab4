# MISTAKE: writes into one preallocated output per shape, so the next call overwrites earlier results
# EXPECT: changed after a later call
import torch

_buffers = {}


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    shape = (*packed.shape[:-1], 2 * packed.shape[-1])
    if shape not in _buffers:
        _buffers[shape] = torch.empty(shape, dtype=torch.uint8)
    out = _buffers[shape]
    out[..., 0::2] = packed & 0x0F
    out[..., 1::2] = packed >> 4
    return out
