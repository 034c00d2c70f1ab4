# MISTAKE: remembers the costs under (model name, num_layers, batch, context, dtype)
# EXPECT: some of its sizes
_memo = {}


def decode_step_costs(shape: ModelShape, batch: int, context_len: int, dtype="bf16") -> dict:
    key = (shape.name, shape.num_layers, batch, context_len, str(dtype))
    if key not in _memo:
        b = bytes_per_element(dtype)
        params = shape.params_b * 1e9
        work = shape.num_layers * shape.head_dim * context_len * batch
        _memo[key] = (
            2.0 * params * batch,
            params * b,
            4.0 * shape.num_heads * work,
            2.0 * shape.num_kv_heads * work * b,
        )
    return dict(zip(("matmul_flops", "matmul_bytes", "attention_flops", "attention_bytes"), _memo[key]))
