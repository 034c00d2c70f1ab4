# MISTAKE: compares with MQA (one KV head) instead of MHA
# EXPECT: compared with MQA
import torch


def gqa_saving_factor(shape: ModelShape) -> float:
    mha_bytes = 2 * shape.num_layers * shape.num_heads * shape.head_dim
    own_bytes = 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim
    return own_bytes / (2 * shape.num_layers * 1 * shape.head_dim)
