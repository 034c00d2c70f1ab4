# VALID: its own table of bytes per dtype (names and torch dtypes), exact Fraction arithmetic, shape.kv_width, float(...) at the end
from fractions import Fraction

BYTES = {"fp32": 4, "float32": 4, "fp16": 2, "float16": 2, "bf16": 2, "bfloat16": 2, "fp8": 1, "int8": 1}
BYTES["int4"] = Fraction(1, 2)


def kv_gib(shape: ModelShape, seq_len: int, batch: int = 1, dtype="fp16") -> float:
    if isinstance(dtype, torch.dtype):
        size = torch.empty((), dtype=dtype).element_size()
    else:
        size = BYTES[dtype]
    elements = 2 * shape.num_layers * shape.kv_width * seq_len * batch
    return float(Fraction(elements) * size / 1024**3)
