# VALID: walks the users one by one like a block manager (the first user allocates the prompt's full blocks, later ones hit them; each user's own blocks counted as they fill), bytes per token from kv_cache_bytes
def prefix_cached_bytes(
    shape: ModelShape, prefix_len: int, suffix_len: int, n_users: int, block_size: int = 16, dtype="fp16"
) -> int:
    cached = {}  # prompt block number -> allocated block id
    allocated = 0
    for _user in range(n_users):
        if not cached:
            for block in range(prefix_len // block_size):
                cached[block] = allocated
                allocated += 1
        own_tokens = prefix_len % block_size + suffix_len  # the partial prompt block and the suffix
        allocated += own_tokens // block_size + (1 if own_tokens % block_size else 0)
    per_token = kv_cache_bytes(shape.num_layers, shape.num_kv_heads, shape.head_dim, 1, 1, dtype)
    return allocated * block_size * per_token
