# MISTAKE: derives the KV width through the group size with true division, so the answer is a float
# EXPECT: must be an int
import torch


def kv_bytes_per_token(shape: ModelShape, bytes_per_element: int = 2) -> int:
    group = shape.num_heads / shape.num_kv_heads  # query heads per KV head
    kv_width = shape.num_heads * shape.head_dim / group
    return 2 * shape.num_layers * kv_width * bytes_per_element
