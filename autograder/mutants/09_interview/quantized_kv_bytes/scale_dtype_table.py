# MISTAKE: its own table of scale dtype names: misses 'bfloat16', 'float32', 'half'
# EXPECT: raised KeyError: 'bfloat16'
SIZES = {"fp16": 2, "float16": 2, "bf16": 2, "fp32": 4, "fp8": 1}


def quantized_kv_bytes(
    shape: ModelShape, seq_len: int, bits: int, group_size: int = 64, batch: int = 1, scale_dtype="fp16"
) -> int:
    if bits not in (2, 4, 8):
        raise ValueError("bits")
    if group_size < 1 or shape.head_dim % group_size:
        raise ValueError("group_size")
    sb = scale_dtype.itemsize if isinstance(scale_dtype, torch.dtype) else SIZES[scale_dtype]
    codes = math.ceil(shape.head_dim * bits / 8)
    scales = 2 * (shape.head_dim // group_size) * sb
    return int(2 * shape.num_layers * shape.num_kv_heads * seq_len * batch * (codes + scales))
