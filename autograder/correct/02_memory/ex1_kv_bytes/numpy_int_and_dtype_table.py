# VALID: a NumPy integer result and one lookup table for both spellings of the dtype
import numpy as np
def kv_cache_bytes(num_layers, num_kv_heads, head_dim, seq_len, batch, dtype):
    size = {'fp32': 4, 'fp16': 2, 'bf16': 2, 'int8': 1,
            torch.float32: 4, torch.float16: 2, torch.bfloat16: 2, torch.int8: 1}[dtype]
    return np.int64(2) * num_layers * num_kv_heads * head_dim * seq_len * batch * size
