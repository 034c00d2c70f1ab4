# MISTAKE: returns the percentage of memory saved instead of the factor
# EXPECT: percentage of memory saved
import torch


def gqa_saving_factor(shape: ModelShape) -> float:
    return 100 * (1 - shape.num_kv_heads / shape.num_heads)
