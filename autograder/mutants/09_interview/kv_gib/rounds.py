# MISTAKE: rounds the answer to two decimals, as one would say it in an interview
# EXPECT: rounded to 2 decimals
def kv_gib(shape: ModelShape, seq_len: int, batch: int = 1, dtype="fp16") -> float:
    per_token = 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim * bytes_per_element(dtype)
    return round(per_token * seq_len * batch / 2**30, 2)
