# MISTAKE: checks only that group_size divides head_dim: group_size 0 divides by zero, a negative group passes
# EXPECT: group_size=0 is not positive
def quantized_kv_bytes(
    shape: ModelShape, seq_len: int, bits: int, group_size: int = 64, batch: int = 1, scale_dtype="fp16"
) -> int:
    if bits not in (2, 4, 8):
        raise ValueError("bits")
    if shape.head_dim % group_size != 0:
        raise ValueError("group_size")
    codes = math.ceil(shape.head_dim * bits / 8)
    scales = 2 * (shape.head_dim // group_size) * bytes_per_element(scale_dtype)
    return int(2 * shape.num_layers * shape.num_kv_heads * seq_len * batch * (codes + scales))
