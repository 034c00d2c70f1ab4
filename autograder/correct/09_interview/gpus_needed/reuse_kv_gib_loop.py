# VALID: reuses exercise 1's kv_gib for the cache and adds GPUs one at a time until the load fits, all in GiB
def gpus_needed(
    shape: ModelShape,
    n_requests: int,
    seq_len: int,
    gpu_gib: float = 80.0,
    utilization: float = 0.9,
    weight_dtype="bf16",
    kv_dtype="bf16",
) -> int:
    load_gib = shape.params_b * 10**9 * bytes_per_element(weight_dtype) / 2**30
    load_gib += kv_gib(shape, seq_len, n_requests, kv_dtype)
    gpus = 1
    while gpus * utilization * gpu_gib < load_gib:
        gpus += 1
    return gpus
