# MISTAKE: computes the MHA twin's width as hidden_size, which differs from heads * head_dim for some models
# EXPECT: not always hidden_size
import torch


def gqa_saving_factor(shape: ModelShape) -> float:
    mha_bytes = 2 * shape.num_layers * shape.hidden_size
    own_bytes = 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim
    return mha_bytes / own_bytes
