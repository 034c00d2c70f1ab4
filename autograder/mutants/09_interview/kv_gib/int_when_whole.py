# MISTAKE: returns an int when the size is a whole number of GiB
# EXPECT: the docstring promises a float, not rounded
def kv_gib(shape: ModelShape, seq_len: int, batch: int = 1, dtype="fp16") -> float:
    per_token = 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim * bytes_per_element(dtype)
    gib = per_token * seq_len * batch / 2**30
    return int(gib) if gib.is_integer() else gib
