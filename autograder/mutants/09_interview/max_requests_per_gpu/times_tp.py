# MISTAKE: multiplies one GPU's count by tp for the group
# EXPECT: multiplied by tp
def max_requests_per_gpu(
    shape: ModelShape,
    seq_len: int,
    tp: int,
    gpu_gib: float = 80.0,
    utilization: float = 0.9,
    weight_dtype="bf16",
    kv_dtype="bf16",
) -> int:
    kv = shape.num_kv_heads
    if tp < 1 or shape.num_heads % tp or (kv % tp if tp <= kv else tp % kv):
        raise ValueError(f"tp={tp} cannot split {shape.num_heads} query heads and {kv} KV heads")
    heads = max(1, kv // tp)
    free = utilization * gpu_gib * 2**30 - shape.params_b * 1e9 * bytes_per_element(weight_dtype) / tp
    per_request = 2 * shape.num_layers * heads * shape.head_dim * seq_len * bytes_per_element(kv_dtype)
    return max(0, math.floor(free / per_request)) * tp
