# VALID: exact Fraction arithmetic, the ceiling as -(-a // b), a NumPy integer returned
from fractions import Fraction

import numpy as np


def gpus_needed(
    shape: ModelShape,
    n_requests: int,
    seq_len: int,
    gpu_gib: float = 80.0,
    utilization: float = 0.9,
    weight_dtype="bf16",
    kv_dtype="bf16",
) -> int:
    weights = Fraction(shape.params_b) * 10**9 * Fraction(bytes_per_element(weight_dtype))
    per_request = 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim * seq_len
    kv = n_requests * per_request * Fraction(bytes_per_element(kv_dtype))
    usable = Fraction(utilization) * Fraction(gpu_gib) * 2**30
    return np.int64(max(1, -(-(weights + kv) // usable)))
