# MISTAKE: returns the fraction of memory saved instead of the factor
# EXPECT: fraction of memory saved
import torch


def gqa_saving_factor(shape: ModelShape) -> float:
    mha_bytes = 2 * shape.num_layers * shape.num_heads * shape.head_dim
    own_bytes = 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim
    return 1 - own_bytes / mha_bytes
