# MISTAKE: writes the formula out with element_size(), which only works for torch dtypes, not "fp16"
# EXPECT: dtype may be a name
def kv_bytes_per_gpu(shape: ModelShape, tp: int, seq_len: int, batch: int = 1, dtype=torch.float16) -> int:
    if tp < 1 or shape.num_heads % tp:
        raise ValueError(f"tp={tp} must be >= 1 and divide the {shape.num_heads} query heads")
    kv = shape.num_kv_heads
    if tp <= kv and kv % tp:
        raise ValueError(f"tp={tp} does not divide the {kv} KV heads")
    if tp > kv and tp % kv:
        raise ValueError(f"tp={tp} is not a multiple of the {kv} KV heads")
    heads_per_gpu = kv // tp if tp <= kv else 1
    size = torch.empty((), dtype=dtype).element_size()
    return 2 * shape.num_layers * heads_per_gpu * shape.head_dim * seq_len * batch * size
