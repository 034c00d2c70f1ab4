# MISTAKE: reads the element size from torch, so a name such as 'bf16' fails
# EXPECT: bytes_per_element(dtype) accepts both
def decode_step_costs(shape: ModelShape, batch: int, context_len: int, dtype=torch.bfloat16) -> dict:
    b = torch.empty((), dtype=dtype).element_size()
    params = shape.params_b * 1e9
    head_work = shape.num_layers * shape.head_dim * context_len * batch
    return {
        "matmul_flops": 2.0 * params * batch,
        "matmul_bytes": float(params * b),
        "attention_flops": 4.0 * shape.num_heads * head_work,
        "attention_bytes": 2.0 * shape.num_kv_heads * head_work * b,
    }
