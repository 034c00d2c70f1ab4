# MISTAKE: remembers the elements per token under (model name, num_layers)
# EXPECT: or by the name and some of the sizes
_memo = {}


def kv_gib(shape: ModelShape, seq_len: int, batch: int = 1, dtype="fp16") -> float:
    key = (shape.name, shape.num_layers)
    if key not in _memo:
        _memo[key] = 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim
    return _memo[key] * bytes_per_element(dtype) * seq_len * batch / 2**30
