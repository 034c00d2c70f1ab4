# MISTAKE: computes the ratio with torch and returns a one-element tensor instead of a float
# EXPECT: got a tensor
import torch


def gqa_saving_factor(shape: ModelShape) -> float:
    heads = torch.tensor([shape.num_heads, shape.num_kv_heads], dtype=torch.float64)
    return heads[0] / heads[1]
