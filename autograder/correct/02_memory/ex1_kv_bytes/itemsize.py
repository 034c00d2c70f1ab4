# VALID: dtype.itemsize, strings mapped to dtypes (from an independent review)
def kv_cache_bytes(num_layers, num_kv_heads, head_dim, seq_len, batch, dtype):

    names = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "int8": torch.int8}
    dt = names[dtype] if isinstance(dtype, str) else dtype
    return int(2 * num_layers * num_kv_heads * head_dim * seq_len * batch * dt.itemsize)
