# MISTAKE: computes in NumPy float32 and returns the NumPy scalar, not a Python float
# EXPECT: numpy.float32
import numpy as np


def pruned_fraction(full_heads: torch.Tensor, seq_len: int, num_sinks: int, window: int) -> float:
    kept = np.where(full_heads.numpy(), seq_len, min(seq_len, num_sinks + window)).astype(np.float32)
    return kept.mean() / np.float32(seq_len)
