# VALID: counts everything in bits with exact integer arithmetic (scales as 8 * bytes bits), rounds the codes up with -(-a // b), checks group_size first
from fractions import Fraction


def quantized_kv_bytes(
    shape: ModelShape, seq_len: int, bits: int, group_size: int = 64, batch: int = 1, scale_dtype="fp16"
) -> int:
    if not isinstance(group_size, int) or group_size <= 0 or shape.head_dim % group_size != 0:
        raise ValueError(f"group_size {group_size} must divide head_dim {shape.head_dim}")
    if bits not in {8, 4, 2}:
        raise ValueError(f"only 8-, 4- and 2-bit codes are supported, not {bits}")
    code_bytes = -(-(shape.head_dim * bits) // 8)
    scale_bits = Fraction(bytes_per_element(scale_dtype)) * 8
    groups = shape.head_dim // group_size
    side_bits = groups * 2 * scale_bits  # a scale and a zero-point per group
    vector_bits = code_bytes * 8 + side_bits
    n_vectors = seq_len * batch * shape.num_layers * shape.num_kv_heads * 2
    total = Fraction(n_vectors) * vector_bits / 8
    return total.numerator // total.denominator
