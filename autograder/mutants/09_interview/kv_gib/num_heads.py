# MISTAKE: counts the query heads (num_heads) instead of the KV heads
# EXPECT: instead of num_kv_heads
def kv_gib(shape: ModelShape, seq_len: int, batch: int = 1, dtype="fp16") -> float:
    per_token = 2 * shape.num_layers * shape.num_heads * shape.head_dim * bytes_per_element(dtype)
    return per_token * seq_len * batch / 2**30
