# MISTAKE: packs the codes with integer division, dropping the last partial byte
# EXPECT: not rounded up
def quantized_kv_bytes(
    shape: ModelShape, seq_len: int, bits: int, group_size: int = 64, batch: int = 1, scale_dtype="fp16"
) -> int:
    if bits not in (2, 4, 8):
        raise ValueError(f"bits must be 2, 4 or 8, got {bits}")
    if group_size < 1 or shape.head_dim % group_size:
        raise ValueError(f"group_size={group_size} does not divide head_dim={shape.head_dim}")
    codes = shape.head_dim * bits // 8
    scales = 2 * (shape.head_dim // group_size) * bytes_per_element(scale_dtype)
    vectors = 2 * shape.num_layers * shape.num_kv_heads * seq_len * batch
    return int(vectors * (codes + scales))
