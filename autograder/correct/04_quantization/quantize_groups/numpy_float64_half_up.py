# VALID: NumPy in float64, round-half-up (floor(v + 0.5)) instead of torch.round, scale cast to float32 at the end
import numpy as np
import torch


def quantize_groups(x: torch.Tensor, group_size: int, bits: int = 4):
    d = x.shape[-1]
    if d % group_size:
        raise ValueError(f"{group_size} does not divide {d}")
    top = 2**bits - 1
    a = x.detach().double().numpy()
    g = a.reshape(*a.shape[:-1], d // group_size, group_size)
    lo = np.minimum(g.min(axis=-1), 0.0)
    hi = np.maximum(g.max(axis=-1), 0.0)
    scale = (hi - lo) / top
    scale[scale == 0] = 1.0
    zp = np.clip(np.floor(-lo / scale + 0.5), 0, top)
    codes = np.clip(np.floor(g / scale[..., None] + 0.5) + zp[..., None], 0, top)
    return (
        torch.from_numpy(codes.reshape(a.shape).astype(np.uint8)),
        torch.from_numpy(scale.astype(np.float32)),
        torch.from_numpy(zp.astype(np.uint8)),
    )
