# VALID: exact Fractions (params_b read from its decimal spelling), shape.kv_width, float() per key in a dict comprehension
from fractions import Fraction


def decode_step_costs(shape: ModelShape, batch: int, context_len: int, dtype="bf16") -> dict:
    b = Fraction(bytes_per_element(dtype))
    params = Fraction(str(shape.params_b)) * 10**9
    kv_tokens = shape.num_layers * context_len * batch
    vals = {
        "matmul_flops": 2 * params * batch,
        "matmul_bytes": params * b,
        "attention_flops": 4 * shape.num_heads * shape.head_dim * kv_tokens,
        "attention_bytes": 2 * shape.kv_width * kv_tokens * b,
    }
    return {k: float(v) for k, v in vals.items()}
