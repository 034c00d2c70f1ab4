# MISTAKE: params_b used as a number of parameters, not billions of them
# EXPECT: params_b is not multiplied by 10**9
def gpus_needed(
    shape: ModelShape,
    n_requests: int,
    seq_len: int,
    gpu_gib: float = 80.0,
    utilization: float = 0.9,
    weight_dtype="bf16",
    kv_dtype="bf16",
) -> int:
    weights = shape.params_b * bytes_per_element(weight_dtype)
    kv = 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim * seq_len * n_requests
    kv *= bytes_per_element(kv_dtype)
    usable = utilization * gpu_gib * 2**30
    return max(1, math.ceil((weights + kv) / usable))
