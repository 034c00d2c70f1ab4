# MISTAKE: forgets the factor 2: counts the keys but not the values
# EXPECT: factor 2 is missing
def kv_gib(shape: ModelShape, seq_len: int, batch: int = 1, dtype="fp16") -> float:
    per_token = shape.num_layers * shape.num_kv_heads * shape.head_dim * bytes_per_element(dtype)
    return per_token * seq_len * batch / 2**30
