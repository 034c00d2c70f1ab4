# MISTAKE: counts numbers instead of bytes (bytes_per_element is never used; looks right only when it is 1)
# EXPECT: bytes_per_element is not used
import torch


def kv_bytes_per_token(shape: ModelShape, bytes_per_element: int = 2) -> int:
    return 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim
