# MISTAKE: every user stores the whole prompt: nothing shared
# EXPECT: the prefix stored per user
def prefix_cached_bytes(
    shape: ModelShape, prefix_len: int, suffix_len: int, n_users: int, block_size: int = 16, dtype="fp16"
) -> int:
    if n_users == 0:
        return 0
    own = math.ceil((prefix_len + suffix_len) / block_size)
    per_token = 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim * bytes_per_element(dtype)
    return int(n_users * own * block_size * per_token)
