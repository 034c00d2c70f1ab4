# VALID: its own table of bytes per dtype (every name bytes_per_element accepts, and torch dtypes), exact Fraction arithmetic, shape.kv_width, float(...) at the end
from fractions import Fraction

# every name bytes_per_element accepts (the docstring allows them all)
BYTES = {"fp32": 4, "float32": 4, "float": 4, "fp16": 2, "float16": 2, "half": 2, "bf16": 2, "bfloat16": 2}
BYTES.update({"fp8": 1, "float8": 1, "float8_e4m3fn": 1, "float8_e5m2": 1, "int8": 1, "uint8": 1})
BYTES.update({"fp64": 8, "float64": 8, "double": 8, "int4": Fraction(1, 2), "int2": Fraction(1, 4)})


def kv_gib(shape: ModelShape, seq_len: int, batch: int = 1, dtype="fp16") -> float:
    if isinstance(dtype, torch.dtype):
        size = torch.empty((), dtype=dtype).element_size()
    else:
        size = BYTES[dtype]
    elements = 2 * shape.num_layers * shape.kv_width * seq_len * batch
    return float(Fraction(elements) * size / 1024**3)
