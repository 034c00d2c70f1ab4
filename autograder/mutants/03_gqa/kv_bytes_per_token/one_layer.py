# MISTAKE: forgets the number of layers
# EXPECT: forgot the layers
import torch


def kv_bytes_per_token(shape: ModelShape, bytes_per_element: float = 2) -> int:
    return 2 * shape.num_kv_heads * shape.head_dim * bytes_per_element
