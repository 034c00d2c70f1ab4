# MISTAKE: remembers the per-request bytes per token under (model name, num_layers, tp)
# EXPECT: some of its sizes
_memo = {}


def max_requests_per_gpu(
    shape, seq_len, tp, gpu_gib=80.0, utilization=0.9, weight_dtype="bf16", kv_dtype="bf16"
) -> int:
    kv = shape.num_kv_heads
    if tp < 1 or shape.num_heads % tp or (kv % tp if tp <= kv else tp % kv):
        raise ValueError("bad tp")
    key = (shape.name, shape.num_layers, tp)
    _memo.setdefault(key, 2 * shape.num_layers * max(1, kv // tp) * shape.head_dim)
    free = utilization * gpu_gib * 2**30 - shape.params_b * 1e9 * bytes_per_element(weight_dtype) / tp
    return max(0, math.floor(free / (_memo[key] * seq_len * bytes_per_element(kv_dtype))))
