# MISTAKE: with no suffix, shares the whole prompt, its partial last block too
# EXPECT: shared blocks + n_users * ceil
def prefix_cached_bytes(
    shape: ModelShape, prefix_len: int, suffix_len: int, n_users: int, block_size: int = 16, dtype="fp16"
) -> int:
    if n_users == 0:
        return 0
    per_token = 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim * bytes_per_element(dtype)
    if suffix_len == 0:
        return int(math.ceil(prefix_len / block_size) * block_size * per_token)
    blocks = prefix_len // block_size + n_users * math.ceil(
        (prefix_len % block_size + suffix_len) / block_size
    )
    return int(blocks * block_size * per_token)
