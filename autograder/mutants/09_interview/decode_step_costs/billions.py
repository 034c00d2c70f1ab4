# MISTAKE: uses params_b as the number of parameters
# EXPECT: not multiplied by 10**9
def decode_step_costs(shape: ModelShape, batch: int, context_len: int, dtype="bf16") -> dict:
    b = bytes_per_element(dtype)
    params = shape.params_b
    head_work = shape.num_layers * shape.head_dim * context_len * batch
    return {
        "matmul_flops": 2.0 * params * batch,
        "matmul_bytes": float(params * b),
        "attention_flops": 4.0 * shape.num_heads * head_work,
        "attention_bytes": 2.0 * shape.num_kv_heads * head_work * b,
    }
