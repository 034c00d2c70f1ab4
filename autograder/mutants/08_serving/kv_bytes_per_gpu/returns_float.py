# MISTAKE: divides the whole cache with /, which returns a float
# EXPECT: must be an int
def kv_bytes_per_gpu(shape: ModelShape, tp: int, seq_len: int, batch: int = 1, dtype=torch.float16) -> int:
    if tp < 1 or shape.num_heads % tp:
        raise ValueError(f"tp={tp} must be >= 1 and divide the {shape.num_heads} query heads")
    kv = shape.num_kv_heads
    if tp <= kv and kv % tp:
        raise ValueError(f"tp={tp} does not divide the {kv} KV heads")
    if tp > kv and tp % kv:
        raise ValueError(f"tp={tp} is not a multiple of the {kv} KV heads")
    total = kv_cache_bytes(shape.num_layers, kv, shape.head_dim, seq_len, batch, dtype)
    return total / min(tp, kv)
