# MISTAKE: never checks tp >= 1: tp = 0 divides by zero, a negative tp passes every divisibility test
# EXPECT: tp=0 is not a number of GPUs
def max_requests_per_gpu(
    shape, seq_len, tp, gpu_gib=80.0, utilization=0.9, weight_dtype="bf16", kv_dtype="bf16"
) -> int:
    kv = shape.num_kv_heads
    if shape.num_heads % tp or (kv % tp if tp <= kv else tp % kv):
        raise ValueError("bad tp")
    heads = max(1, kv // tp)
    free = utilization * gpu_gib * 2**30 - shape.params_b * 1e9 * bytes_per_element(weight_dtype) / tp
    per_request = 2 * shape.num_layers * heads * shape.head_dim * seq_len * bytes_per_element(kv_dtype)
    return max(0, math.floor(free / per_request))
