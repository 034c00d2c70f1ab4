# MISTAKE: KV width from the model width, hidden_size
# EXPECT: hidden_size (the model width
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
    kv = 2 * shape.num_layers * shape.hidden_size * seq_len * n_requests
    kv *= bytes_per_element(kv_dtype)
    usable = utilization * gpu_gib * 2**30
    return max(1, math.ceil((weights + kv) / usable))
