# MISTAKE: remembers each model's bytes per token under the model's name
# EXPECT: not from a memo
PER_TOKEN = {}  # bytes per token and element, by model


def kv_gib(shape: ModelShape, seq_len: int, batch: int = 1, dtype="fp16") -> float:
    if shape.name not in PER_TOKEN:
        PER_TOKEN[shape.name] = 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim
    return PER_TOKEN[shape.name] * bytes_per_element(dtype) * seq_len * batch / 2**30
