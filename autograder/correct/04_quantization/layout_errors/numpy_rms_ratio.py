# VALID: NumPy in float32, the error as an RMS ratio sqrt(mean e^2) / sqrt(mean x^2) (the same number as the norm ratio), results returned as numpy.float64
import numpy as np


def _fake_quantize(groups, axis, levels):
    lo = groups.min(axis=axis, keepdims=True)
    scale = (groups.max(axis=axis, keepdims=True) - lo) / np.float32(levels)
    scale[scale == 0] = 1.0  # a constant group: any positive scale, its codes are all 0
    return np.clip(np.rint((groups - lo) / scale), 0, levels) * scale + lo


def layout_errors(x, bits, group_size):
    a = x.detach().float().cpu().numpy()
    *lead, T, D = a.shape
    G = group_size
    levels = 2**bits - 1
    tok = _fake_quantize(a.reshape(*lead, T, D // G, G), -1, levels).reshape(a.shape)
    ch = _fake_quantize(a.reshape(*lead, T // G, G, D), -2, levels).reshape(a.shape)

    def rms(v):
        return np.sqrt(np.mean(v.astype(np.float64) ** 2))

    return {"per_token": np.float64(rms(a - tok) / rms(a)), "per_channel": np.float64(rms(a - ch) / rms(a))}
