# MISTAKE: counts the query heads instead of the KV heads
# EXPECT: query heads
import torch


def kv_bytes_per_token(shape: ModelShape, bytes_per_element: float = 2) -> int:
    return 2 * shape.num_layers * shape.num_heads * shape.head_dim * bytes_per_element
