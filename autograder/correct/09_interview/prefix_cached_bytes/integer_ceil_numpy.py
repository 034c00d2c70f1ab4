# VALID: the blocks with integer ceiling -(-a // b), the bytes of a block computed first, a NumPy integer returned
import numpy as np


def prefix_cached_bytes(
    shape: ModelShape, prefix_len: int, suffix_len: int, n_users: int, block_size: int = 16, dtype="fp16"
) -> int:
    block_bytes = block_size * 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim
    block_bytes = int(block_bytes * bytes_per_element(dtype))
    shared, partial = divmod(prefix_len, block_size)
    own = -(-(partial + suffix_len) // block_size)
    return np.int64(shared * block_bytes * (n_users > 0) + n_users * own * block_bytes)
