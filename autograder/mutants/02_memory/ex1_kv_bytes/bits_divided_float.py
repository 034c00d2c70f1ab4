# MISTAKE: bytes per element from the bit width divided with / (fp16: 16 / 8 = 2.0), so the result is a float
# EXPECT: must be an int
def kv_cache_bytes(num_layers: int, num_kv_heads: int, head_dim: int, seq_len: int, batch: int,
                   dtype: torch.dtype | str) -> int:
    """Bytes of the KV cache for `batch` sequences of `seq_len` tokens.

    dtype is a torch dtype (torch.float32, torch.float16, torch.bfloat16, torch.int8) or one of the
    strings "fp32", "fp16", "bf16", "int8". Returns an int number of bytes.
    """
    bits = {"fp32": 32, "fp16": 16, "bf16": 16, "int8": 8}
    if isinstance(dtype, str):
        bytes_per_element = bits[dtype] / 8
    else:
        bytes_per_element = torch.empty((), dtype=dtype).element_size()
    return 2 * num_layers * num_kv_heads * head_dim * seq_len * batch * bytes_per_element
