# MISTAKE: round(x + 0.5) as a ceiling: halves go to the even neighbour, one GPU too many when the load fills an odd number of GPUs exactly
# EXPECT: round(x + 0.5) as a ceiling
def gpus_needed(
    shape, n_requests, seq_len, gpu_gib=80.0, utilization=0.9, weight_dtype="bf16", kv_dtype="bf16"
) -> int:
    weights = shape.params_b * 1e9 * bytes_per_element(weight_dtype)
    kv = (
        2
        * shape.num_layers
        * shape.num_kv_heads
        * shape.head_dim
        * seq_len
        * n_requests
        * bytes_per_element(kv_dtype)
    )
    return max(1, round((weights + kv) / (utilization * gpu_gib * 2**30) + 0.5))
