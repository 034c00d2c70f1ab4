# VALID: the head ratio as a NumPy float
import numpy as np
def gqa_saving_factor(shape):
    return np.float64(shape.num_heads) / shape.num_kv_heads
