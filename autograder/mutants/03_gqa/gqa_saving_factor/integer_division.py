# MISTAKE: divides with // and returns an int, where the spec promises a float (1.0 for MHA)
# EXPECT: must return a float
import torch


def gqa_saving_factor(shape: ModelShape) -> float:
    return shape.num_heads // shape.num_kv_heads
