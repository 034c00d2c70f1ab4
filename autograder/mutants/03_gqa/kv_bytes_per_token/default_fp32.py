# MISTAKE: defaults to 4 bytes per element (fp32) instead of the specified fp16
# EXPECT: without bytes_per_element must count fp16
import torch


def kv_bytes_per_token(shape: ModelShape, bytes_per_element: int = 4) -> int:
    return 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim * bytes_per_element
