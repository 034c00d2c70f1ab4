# VALID: exact rational arithmetic (the decimal inputs read as fractions), one split rule through math.gcd, floor with //
from fractions import Fraction


def max_requests_per_gpu(
    shape: ModelShape,
    seq_len: int,
    tp: int,
    gpu_gib: float = 80.0,
    utilization: float = 0.9,
    weight_dtype="bf16",
    kv_dtype="bf16",
) -> int:
    kv = shape.num_kv_heads
    if tp <= 0 or shape.num_heads % tp != 0 or math.gcd(kv, tp) != min(kv, tp):
        raise ValueError(f"tp={tp} does not split {shape.num_heads} heads / {kv} KV heads evenly")
    heads_here = kv // math.gcd(kv, tp)  # kv / tp when tp divides kv, 1 copied head when kv divides tp
    usable = Fraction(str(utilization)) * Fraction(str(gpu_gib)) * 1024**3
    weights = Fraction(str(shape.params_b)) * 10**9 * Fraction(bytes_per_element(weight_dtype)) / tp
    one_request = 2 * shape.num_layers * heads_here * shape.head_dim * seq_len * Fraction(bytes_per_element(kv_dtype))
    if weights >= usable:
        return 0
    return (usable - weights) // one_request
