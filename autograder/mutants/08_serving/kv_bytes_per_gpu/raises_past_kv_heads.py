# MISTAKE: requires tp to divide the KV heads, so more GPUs than KV heads is refused
# EXPECT: but the split is valid
def kv_bytes_per_gpu(shape: ModelShape, tp: int, seq_len: int, batch: int = 1, dtype=torch.float16) -> int:
    kv = shape.num_kv_heads
    if tp < 1 or shape.num_heads % tp or kv % tp:
        raise ValueError(f"tp={tp} must divide the {shape.num_heads} query heads and the {kv} KV heads")
    return kv_cache_bytes(shape.num_layers, kv // tp, shape.head_dim, seq_len, batch, dtype)
