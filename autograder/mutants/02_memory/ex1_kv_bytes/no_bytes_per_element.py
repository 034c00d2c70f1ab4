# MISTAKE: counts elements and forgets to multiply by the bytes per element
# EXPECT: bytes per element are missing
def kv_cache_bytes(num_layers: int, num_kv_heads: int, head_dim: int, seq_len: int, batch: int,
                   dtype: torch.dtype | str) -> int:
    """Bytes of the KV cache for `batch` sequences of `seq_len` tokens.

    dtype is a torch dtype (torch.float32, torch.float16, torch.bfloat16, torch.int8) or one of the
    strings "fp32", "fp16", "bf16", "int8". Returns an int number of bytes.
    """
    return 2 * num_layers * num_kv_heads * head_dim * seq_len * batch
