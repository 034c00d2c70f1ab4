# MISTAKE: block size 16 written into the formula instead of block_size
# EXPECT: block_size is ignored
def prefix_cached_bytes(
    shape: ModelShape, prefix_len: int, suffix_len: int, n_users: int, block_size: int = 16, dtype="fp16"
) -> int:
    if n_users == 0:
        return 0
    shared = prefix_len // 16
    own = math.ceil((prefix_len - shared * 16 + suffix_len) / 16)
    per_token = 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim * bytes_per_element(dtype)
    return int((shared + n_users * own) * 16 * per_token)
