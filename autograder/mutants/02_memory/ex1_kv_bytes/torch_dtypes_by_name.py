# MISTAKE: maps torch dtypes through a table of their names and forgets torch.bfloat16 and torch.int8
# EXPECT: torch.bfloat16
def kv_cache_bytes(num_layers: int, num_kv_heads: int, head_dim: int, seq_len: int, batch: int,
                   dtype: torch.dtype | str) -> int:
    """Bytes of the KV cache for `batch` sequences of `seq_len` tokens.

    dtype is a torch dtype (torch.float32, torch.float16, torch.bfloat16, torch.int8) or one of the
    strings "fp32", "fp16", "bf16", "int8". Returns an int number of bytes.
    """
    sizes = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1, "torch.float32": 4, "torch.float16": 2}
    bytes_per_element = sizes[str(dtype)]
    return 2 * num_layers * num_kv_heads * head_dim * seq_len * batch * bytes_per_element
