# VALID: NumPy floats and np.floor, the KV heads per GPU by counting copies, a NumPy integer returned
import numpy as np


def max_requests_per_gpu(
    shape: ModelShape,
    seq_len: int,
    tp: int,
    gpu_gib: float = 80.0,
    utilization: float = 0.9,
    weight_dtype="bf16",
    kv_dtype="bf16",
) -> int:
    if tp < 1 or shape.num_heads % tp:
        raise ValueError(f"tp={tp} must divide the {shape.num_heads} query heads")
    if tp <= shape.num_kv_heads:
        if shape.num_kv_heads % tp:
            raise ValueError(f"tp={tp} must divide the {shape.num_kv_heads} KV heads")
        kv_heads = shape.num_kv_heads // tp
    else:
        if tp % shape.num_kv_heads:
            raise ValueError(f"tp={tp} must be a multiple of the {shape.num_kv_heads} KV heads")
        kv_heads = 1  # tp // num_kv_heads GPUs share (copy) each KV head
    budget = np.float64(gpu_gib) * 2**30 * utilization
    budget -= np.float64(shape.params_b) * 1e9 * bytes_per_element(weight_dtype) / tp
    per_request = kv_cache_bytes(shape.num_layers, kv_heads, shape.head_dim, seq_len, 1, kv_dtype)
    return np.int64(max(np.floor(budget / per_request), 0))
