# MISTAKE: refuses a group larger than head_dim or not dividing it, but lets group_size 0 through
# EXPECT: group_size=0 is not positive
def quantized_kv_bytes(
    shape: ModelShape, seq_len: int, bits: int, group_size: int = 64, batch: int = 1, scale_dtype="fp16"
) -> int:
    if bits not in (2, 4, 8):
        raise ValueError("bits")
    if group_size > shape.head_dim or (group_size and shape.head_dim % group_size):
        raise ValueError("group_size")
    codes = math.ceil(shape.head_dim * bits / 8)
    scales = 2 * (shape.head_dim // group_size) * bytes_per_element(scale_dtype)
    return int(2 * shape.num_layers * shape.num_kv_heads * seq_len * batch * (codes + scales))
