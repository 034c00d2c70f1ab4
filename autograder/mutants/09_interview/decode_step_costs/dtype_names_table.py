# MISTAKE: its own table of dtype names and torch's itemsize: misses 'float32', 'half' and 'int2'
# EXPECT: raised KeyError: 'float32'
SIZES = {"fp32": 4, "fp16": 2, "float16": 2, "bf16": 2, "bfloat16": 2, "fp8": 1, "int8": 1, "int4": 0.5}


def decode_step_costs(shape: ModelShape, batch: int, context_len: int, dtype="bf16") -> dict:
    b = dtype.itemsize if isinstance(dtype, torch.dtype) else SIZES[dtype]
    params = shape.params_b * 1e9
    work = shape.num_layers * shape.head_dim * context_len * batch
    return {
        "matmul_flops": 2.0 * params * batch,
        "matmul_bytes": float(params * b),
        "attention_flops": 4.0 * shape.num_heads * work,
        "attention_bytes": 2.0 * shape.num_kv_heads * work * b,
    }
