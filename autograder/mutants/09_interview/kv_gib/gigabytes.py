# MISTAKE: divides by 10**9 (GB) instead of 2**30 (GiB)
# EXPECT: GB (10**9 bytes) instead of GiB
def kv_gib(shape: ModelShape, seq_len: int, batch: int = 1, dtype="fp16") -> float:
    per_token = 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim * bytes_per_element(dtype)
    return per_token * seq_len * batch / 1e9
