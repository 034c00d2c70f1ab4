# MISTAKE: computes head_dim as hidden_size // num_heads instead of reading the head_dim field
# EXPECT: head_dim is a field
import torch


def kv_bytes_per_token(shape: ModelShape, bytes_per_element: int = 2) -> int:
    head_dim = shape.hidden_size // shape.num_heads
    return 2 * shape.num_layers * shape.num_kv_heads * head_dim * bytes_per_element
