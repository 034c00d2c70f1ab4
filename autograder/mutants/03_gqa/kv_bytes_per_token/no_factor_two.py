# MISTAKE: forgets that values are cached as well as keys
# EXPECT: factor 2
import torch


def kv_bytes_per_token(shape: ModelShape, bytes_per_element: float = 2) -> int:
    return shape.num_layers * shape.num_kv_heads * shape.head_dim * bytes_per_element
