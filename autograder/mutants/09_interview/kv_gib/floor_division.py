# MISTAKE: whole GiB with integer division //, which rounds down
# EXPECT: rounded down to whole GiB
def kv_gib(shape: ModelShape, seq_len: int, batch: int = 1, dtype="fp16") -> float:
    nbytes = 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim * seq_len * batch
    nbytes = int(nbytes * bytes_per_element(dtype))
    return nbytes // 2**30
