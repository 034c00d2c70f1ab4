# MISTAKE: returns the number of KV heads saved
# EXPECT: number of heads saved
import torch


def gqa_saving_factor(shape: ModelShape) -> float:
    mha_bytes = 2 * shape.num_layers * shape.num_heads * shape.head_dim
    own_bytes = 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim
    return shape.num_heads - shape.num_kv_heads
