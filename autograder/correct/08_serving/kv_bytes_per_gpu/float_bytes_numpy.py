# VALID: per-GPU heads by counting copies, bytes per element as a float rounded up with math.ceil, a NumPy integer returned
import numpy as np

from kvlib.memory import bytes_per_element


def kv_bytes_per_gpu(shape: ModelShape, tp: int, seq_len: int, batch: int = 1, dtype=torch.float16) -> int:
    if tp < 1 or shape.num_heads % tp != 0:
        raise ValueError("tp must divide the query heads")
    copies = max(1, tp // shape.num_kv_heads)  # GPUs that hold each KV head
    if shape.num_kv_heads * copies % tp != 0 or (copies > 1 and tp % shape.num_kv_heads != 0):
        raise ValueError("the KV heads cannot be split or copied evenly over tp GPUs")
    heads = shape.num_kv_heads * copies // tp
    size = 2 * shape.num_layers * heads * shape.head_dim * seq_len * batch * bytes_per_element(dtype)
    return np.int64(math.ceil(size))
