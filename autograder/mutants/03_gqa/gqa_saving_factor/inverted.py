# MISTAKE: divides this model's bytes by the MHA bytes (upside down)
# EXPECT: upside down
import torch


def gqa_saving_factor(shape: ModelShape) -> float:
    mha_bytes = 2 * shape.num_layers * shape.num_heads * shape.head_dim
    own_bytes = 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim
    return own_bytes / mha_bytes
