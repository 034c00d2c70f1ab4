# MISTAKE: counts a copy of the weights for every request
# EXPECT: weights counted once per request
def gpus_needed(
    shape: ModelShape,
    n_requests: int,
    seq_len: int,
    gpu_gib: float = 80.0,
    utilization: float = 0.9,
    weight_dtype="bf16",
    kv_dtype="bf16",
) -> int:
    weights = shape.params_b * 1e9 * bytes_per_element(weight_dtype)
    kv = 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim * seq_len * n_requests
    kv *= bytes_per_element(kv_dtype)
    usable = utilization * gpu_gib * 2**30
    return max(1, math.ceil((weights * n_requests + kv) / usable))
