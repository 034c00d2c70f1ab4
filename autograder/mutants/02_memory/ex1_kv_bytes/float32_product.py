# MISTAKE: multiplies in float32 with numpy, which rounds large sizes (past 2**24) and returns a float
# EXPECT: must be an int
def kv_cache_bytes(num_layers: int, num_kv_heads: int, head_dim: int, seq_len: int, batch: int,
                   dtype: torch.dtype | str) -> int:
    """Bytes of the KV cache for `batch` sequences of `seq_len` tokens.

    dtype is a torch dtype (torch.float32, torch.float16, torch.bfloat16, torch.int8) or one of the
    strings "fp32", "fp16", "bf16", "int8". Returns an int number of bytes.
    """
    import numpy as np

    if isinstance(dtype, str):
        bytes_per_element = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}[dtype]
    else:
        bytes_per_element = torch.empty((), dtype=dtype).element_size()
    factors = np.array([2, num_layers, num_kv_heads, head_dim, seq_len, batch, bytes_per_element], dtype=np.float32)
    return factors.prod()
