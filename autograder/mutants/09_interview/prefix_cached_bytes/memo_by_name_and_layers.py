# MISTAKE: remembers the bytes per token under (model name, num_layers, dtype)
# EXPECT: or by the name and some of the sizes
_memo = {}


def prefix_cached_bytes(
    shape: ModelShape, prefix_len: int, suffix_len: int, n_users: int, block_size: int = 16, dtype="fp16"
) -> int:
    if n_users == 0:
        return 0
    key = (shape.name, shape.num_layers, str(dtype))
    if key not in _memo:
        _memo[key] = 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim * bytes_per_element(dtype)
    blocks = prefix_len // block_size + n_users * math.ceil(
        (prefix_len % block_size + suffix_len) / block_size
    )
    return int(blocks * block_size * _memo[key])
