# VALID: adds the costs up layer by layer in NumPy float64 (a float subclass), the weights counted as one tensor
import numpy as np


def decode_step_costs(shape: ModelShape, batch: int, context_len: int, dtype="bf16") -> dict:
    nbytes = np.float64(bytes_per_element(dtype))
    n_params = np.float64(shape.params_b) * 10**9
    attention_flops = np.float64(0.0)
    attention_bytes = np.float64(0.0)
    for _layer in range(shape.num_layers):
        scores = 2 * shape.num_heads * shape.head_dim * context_len  # q . k, a multiply and an add each
        mixing = 2 * shape.num_heads * shape.head_dim * context_len  # p . v
        attention_flops += batch * np.float64(scores + mixing)
        attention_bytes += batch * np.float64(2 * shape.num_kv_heads * shape.head_dim * context_len) * nbytes
    return {
        "attention_bytes": attention_bytes,
        "attention_flops": attention_flops,
        "matmul_bytes": n_params * nbytes,
        "matmul_flops": 2 * n_params * batch,
    }
