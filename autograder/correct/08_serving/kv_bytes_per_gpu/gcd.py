# VALID: one rule through math.gcd: a split is even when gcd(KV heads, tp) is the smaller of the two, and each GPU holds KV heads / gcd
def kv_bytes_per_gpu(shape: ModelShape, tp: int, seq_len: int, batch: int = 1, dtype=torch.float16) -> int:
    if tp < 1 or shape.num_heads % tp:
        raise ValueError(f"tp={tp} must be a positive divisor of {shape.num_heads}")
    g = math.gcd(shape.num_kv_heads, tp)
    if g != min(shape.num_kv_heads, tp):
        raise ValueError(f"tp={tp} and {shape.num_kv_heads} KV heads: neither divides the other")
    return kv_cache_bytes(
        num_layers=shape.num_layers,
        num_kv_heads=shape.num_kv_heads // g,
        head_dim=shape.head_dim,
        seq_len=seq_len,
        batch=batch,
        dtype=dtype,
    )
