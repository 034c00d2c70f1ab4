# VALID: computes stored tokens with and without sharing, then 1 - ratio, returning a NumPy float
import numpy as np


def prefix_saving(users: int, system_len: int, question_len: int, block_size: int) -> float:
    shared = np.floor(system_len / block_size) * block_size
    without = users * (system_len + question_len)
    with_sharing = shared + users * (system_len + question_len - shared)
    return np.float64(1 - with_sharing / without)
