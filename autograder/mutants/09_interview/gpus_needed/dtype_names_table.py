# MISTAKE: its own table of dtype names and torch's itemsize: misses 'half', 'int2' and the other names bytes_per_element accepts
# EXPECT: raised KeyError: 'half'
SIZES = {
    "fp32": 4,
    "float32": 4,
    "fp16": 2,
    "float16": 2,
    "bf16": 2,
    "bfloat16": 2,
    "fp8": 1,
    "int8": 1,
    "int4": 0.5,
}


def size(d):
    return d.itemsize if isinstance(d, torch.dtype) else SIZES[d]


def gpus_needed(
    shape, n_requests, seq_len, gpu_gib=80.0, utilization=0.9, weight_dtype="bf16", kv_dtype="bf16"
) -> int:
    weights = shape.params_b * 1e9 * size(weight_dtype)
    kv = 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim * seq_len * n_requests * size(kv_dtype)
    return max(1, math.ceil((weights + kv) / (utilization * gpu_gib * 2**30)))
