# VALID: numpy.prod over the factors (a NumPy integer)
import numpy as np
def kv_bytes_per_token(shape, bytes_per_element=2):
    return np.prod([2, shape.num_layers, shape.num_kv_heads, shape.head_dim, bytes_per_element])
