# VALID: the attention bytes from the setup cell's kv_cache_bytes, FLOPs as the product of the intensities' parts
def decode_step_costs(shape: ModelShape, batch: int, context_len: int, dtype="bf16") -> dict:
    weights = shape.params_b * 1e9
    out = dict(
        matmul_flops=float(2 * weights * batch),
        matmul_bytes=float(weights * bytes_per_element(dtype)),
    )
    macs = shape.num_layers * shape.num_heads * shape.head_dim * context_len * batch * 2  # q.k and p.v
    out["attention_flops"] = float(2 * macs)
    out["attention_bytes"] = float(
        kv_cache_bytes(shape.num_layers, shape.num_kv_heads, shape.head_dim, context_len, batch, dtype)
    )
    return out
