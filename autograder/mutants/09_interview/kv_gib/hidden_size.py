# MISTAKE: uses the model width hidden_size for the KV width
# EXPECT: hidden_size (the model width
def kv_gib(shape: ModelShape, seq_len: int, batch: int = 1, dtype="fp16") -> float:
    per_token = 2 * shape.num_layers * shape.hidden_size * bytes_per_element(dtype)
    return per_token * seq_len * batch / 2**30
