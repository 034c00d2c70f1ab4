# MISTAKE: counts each user's tokens, not whole blocks
# EXPECT: not rounded up
def prefix_cached_bytes(
    shape: ModelShape, prefix_len: int, suffix_len: int, n_users: int, block_size: int = 16, dtype="fp16"
) -> int:
    if n_users == 0:
        return 0
    shared = prefix_len // block_size
    own = (prefix_len - shared * block_size + suffix_len) / block_size
    per_token = 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim * bytes_per_element(dtype)
    return int((shared + n_users * own) * block_size * per_token)
