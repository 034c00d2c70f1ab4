# MISTAKE: floor-divides the heads without checking that the split is even
# EXPECT: must raise ValueError
def kv_bytes_per_gpu(shape: ModelShape, tp: int, seq_len: int, batch: int = 1, dtype=torch.float16) -> int:
    if tp < 1:
        raise ValueError(f"tp={tp} must be >= 1")
    heads_per_gpu = max(1, shape.num_kv_heads // tp)
    return kv_cache_bytes(shape.num_layers, heads_per_gpu, shape.head_dim, seq_len, batch, dtype)
