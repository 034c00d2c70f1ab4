# VALID: writes the formula out in exact integer arithmetic (bytes per element as a fraction, rounded up), checks the KV heads first
_BYTES = {  # (numerator, denominator) bytes per element
    "fp32": (4, 1),
    "float32": (4, 1),
    "float": (4, 1),
    "fp64": (8, 1),
    "float64": (8, 1),
    "double": (8, 1),
    "fp16": (2, 1),
    "float16": (2, 1),
    "half": (2, 1),
    "bf16": (2, 1),
    "bfloat16": (2, 1),
    "fp8": (1, 1),
    "float8": (1, 1),
    "float8_e4m3fn": (1, 1),
    "float8_e5m2": (1, 1),
    "int8": (1, 1),
    "uint8": (1, 1),
    "int4": (1, 2),
    "int2": (1, 4),
}


def kv_bytes_per_gpu(shape: ModelShape, tp: int, seq_len: int, batch: int = 1, dtype=torch.float16) -> int:
    kv = shape.num_kv_heads
    if tp < 1:
        raise ValueError(f"tp must be at least 1, got {tp}")
    if tp <= kv:
        if kv % tp:
            raise ValueError(f"{tp} GPUs cannot split {kv} KV heads evenly")
        kv_per_gpu = kv // tp
    else:
        if tp % kv:
            raise ValueError(f"{tp} GPUs cannot hold copies of {kv} KV heads evenly")
        kv_per_gpu = 1
    if shape.num_heads % tp:
        raise ValueError(f"{tp} GPUs cannot split {shape.num_heads} query heads evenly")
    if isinstance(dtype, torch.dtype):
        num, den = torch.empty((), dtype=dtype).element_size(), 1
    else:
        num, den = _BYTES[dtype.strip().lower().removeprefix("torch.")]
    elements = 2 * shape.num_layers * kv_per_gpu * shape.head_dim * seq_len * batch
    return -(-elements * num // den)
