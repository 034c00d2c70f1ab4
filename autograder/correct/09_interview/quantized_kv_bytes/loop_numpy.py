# VALID: adds the bytes up layer by layer and tensor by tensor (K, then V) in NumPy integers, returns a numpy.int64
import numpy as np


def quantized_kv_bytes(
    shape: ModelShape, seq_len: int, bits: int, group_size: int = 64, batch: int = 1, scale_dtype="fp16"
) -> int:
    if bits != 8 and bits != 4 and bits != 2:
        raise ValueError("bits must be 8, 4 or 2")
    if group_size < 1 or group_size > shape.head_dim or shape.head_dim % group_size:
        raise ValueError("group_size must divide head_dim")
    packed = (shape.head_dim * bits + 7) // 8
    per_group = 2 * int(bytes_per_element(scale_dtype))
    vector = np.int64(packed + per_group * (shape.head_dim // group_size))
    total = np.int64(0)
    for _layer in range(shape.num_layers):
        for _tensor in ("key", "value"):
            total += vector * shape.num_kv_heads * seq_len * batch
    return total
