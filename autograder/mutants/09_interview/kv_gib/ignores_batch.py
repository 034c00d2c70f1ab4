# MISTAKE: sizes one request: batch is ignored
# EXPECT: batch is ignored
def kv_gib(shape: ModelShape, seq_len: int, batch: int = 1, dtype="fp16") -> float:
    per_token = 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim * bytes_per_element(dtype)
    return per_token * seq_len / 2**30
