# MISTAKE: returns how much more the MHA twin caches relative to this model (the factor minus one), 0 for MHA
# EXPECT: factor minus one
import torch


def gqa_saving_factor(shape: ModelShape) -> float:
    mha = shape.num_heads * shape.head_dim
    own = shape.num_kv_heads * shape.head_dim
    return (mha - own) / own
