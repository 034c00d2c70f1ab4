# VALID: math.prod over the factors, bytes per element from dtype.itemsize
import math
def kv_cache_bytes(num_layers, num_kv_heads, head_dim, seq_len, batch, dtype):
    if isinstance(dtype, str):
        dtype = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16,
                 'int8': torch.int8}[dtype]
    return math.prod([2, num_layers, num_kv_heads, head_dim, seq_len, batch, dtype.itemsize])
