# MISTAKE: reads the bit width from the last two characters of the name ("fp16" -> 16), which breaks on "int8"
# EXPECT: 'int8'
def kv_cache_bytes(num_layers: int, num_kv_heads: int, head_dim: int, seq_len: int, batch: int,
                   dtype: torch.dtype | str) -> int:
    """Bytes of the KV cache for `batch` sequences of `seq_len` tokens.

    dtype is a torch dtype (torch.float32, torch.float16, torch.bfloat16, torch.int8) or one of the
    strings "fp32", "fp16", "bf16", "int8". Returns an int number of bytes.
    """
    if isinstance(dtype, str):
        bytes_per_element = int(dtype[-2:]) // 8
    else:
        bytes_per_element = torch.empty((), dtype=dtype).element_size()
    return 2 * num_layers * num_kv_heads * head_dim * seq_len * batch * bytes_per_element
