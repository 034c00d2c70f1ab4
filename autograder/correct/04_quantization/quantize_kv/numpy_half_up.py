# VALID: NumPy, halves rounded up with floor(q + 0.5) (unlike torch.round only at exact ties), returns a list
import numpy as np
import torch


def _one(x: torch.Tensor, qmax: int):
    a = x.float().numpy()
    absmax = np.abs(a).max(axis=-1, keepdims=True)
    scale = np.where(absmax > 0, absmax / np.float32(qmax), np.float32(1.0)).astype(np.float32)
    codes = np.clip(np.floor(a / scale + 0.5), -qmax, qmax).astype(np.int8)
    return torch.from_numpy(codes), torch.from_numpy(scale)


def quantize_kv(k: torch.Tensor, v: torch.Tensor, bits: int = 8):
    qmax = {8: 127, 4: 7}.get(bits)
    if qmax is None:
        raise ValueError(f"bits={bits}: use 8 or 4")
    return [*_one(k, qmax), *_one(v, qmax)]
