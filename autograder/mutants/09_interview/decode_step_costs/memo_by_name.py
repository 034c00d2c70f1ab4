# MISTAKE: remembers the costs by model name, batch, context and dtype
# EXPECT: memo keyed by the model's name
_memo = {}


def decode_step_costs(shape: ModelShape, batch: int, context_len: int, dtype="bf16") -> dict:
    key = (shape.name, batch, context_len, str(dtype))
    if key in _memo:
        return dict(_memo[key])
    b = bytes_per_element(dtype)
    params = shape.params_b * 1e9
    head_work = shape.num_layers * shape.head_dim * context_len * batch
    _memo[key] = {
        "matmul_flops": 2.0 * params * batch,
        "matmul_bytes": float(params * b),
        "attention_flops": 4.0 * shape.num_heads * head_work,
        "attention_bytes": 2.0 * shape.num_kv_heads * head_work * b,
    }
    return dict(_memo[key])
