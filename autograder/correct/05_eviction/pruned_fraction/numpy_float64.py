# VALID: NumPy float64 per-layer shares averaged over layers; np.float64 is a Python float subclass
import numpy as np


def pruned_fraction(full_heads: torch.Tensor, seq_len: int, num_sinks: int, window: int) -> float:
    plan = full_heads.numpy()
    kept = np.minimum(seq_len, num_sinks + window)
    per_layer = (plan.sum(axis=1) * seq_len + (~plan).sum(axis=1) * kept) / (plan.shape[1] * seq_len)
    return np.float64(per_layer.mean())
