# MISTAKE: uses hidden_size as the width of the cached keys
# EXPECT: hidden_size
import torch


def kv_bytes_per_token(shape: ModelShape, bytes_per_element: float = 2) -> int:
    return 2 * shape.num_layers * shape.hidden_size * bytes_per_element
