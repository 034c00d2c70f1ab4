# VALID: adds up the cache layer by layer in NumPy float64 and returns a NumPy float
import numpy as np


def kv_gib(shape: ModelShape, seq_len: int, batch: int = 1, dtype="fp16") -> float:
    total = np.float64(0.0)
    for _layer in range(shape.num_layers):
        keys = np.float64(batch) * seq_len * shape.num_kv_heads * shape.head_dim * bytes_per_element(dtype)
        total += 2 * keys  # values are as large as keys
    return total / GiB
