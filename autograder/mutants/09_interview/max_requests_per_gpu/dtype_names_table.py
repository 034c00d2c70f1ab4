# MISTAKE: its own table of dtype names (fp16, bf16, fp8, ...) and torch's itemsize: misses 'float16' and other names bytes_per_element accepts
# EXPECT: raised KeyError: 'float16'
SIZES = {"fp32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "int8": 1, "int4": 0.5}


def max_requests_per_gpu(
    shape, seq_len, tp, gpu_gib=80.0, utilization=0.9, weight_dtype="bf16", kv_dtype="bf16"
) -> int:
    kv = shape.num_kv_heads
    if tp < 1 or shape.num_heads % tp or (kv % tp if tp <= kv else tp % kv):
        raise ValueError("bad tp")
    heads = max(1, kv // tp)
    wb = weight_dtype.itemsize if isinstance(weight_dtype, torch.dtype) else SIZES[weight_dtype]
    kb = kv_dtype.itemsize if isinstance(kv_dtype, torch.dtype) else SIZES[kv_dtype]
    free = utilization * gpu_gib * 2**30 - shape.params_b * 1e9 * wb / tp
    per_request = 2 * shape.num_layers * heads * shape.head_dim * seq_len * kb
    return max(0, math.floor(free / per_request))
