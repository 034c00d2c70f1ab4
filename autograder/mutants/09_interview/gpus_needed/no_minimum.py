# MISTAKE: math.ceil alone: 0 GPUs when there is nothing to hold
# EXPECT: 0 GPUs for a load of no bytes
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
    return math.ceil((weights + kv) / usable)
