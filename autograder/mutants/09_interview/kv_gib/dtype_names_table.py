# MISTAKE: its own table of dtype names (fp16, bf16, float16, int4, ...) and torch's itemsize: misses other names bytes_per_element accepts, such as 'half' and 'int2'
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


def kv_gib(shape: ModelShape, seq_len: int, batch: int = 1, dtype="fp16") -> float:
    size = dtype.itemsize if isinstance(dtype, torch.dtype) else SIZES[dtype]
    per_token = 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim * size
    return per_token * seq_len * batch / 2**30
