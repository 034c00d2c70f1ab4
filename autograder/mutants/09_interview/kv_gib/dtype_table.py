# MISTAKE: its own table of bytes per dtype name, which knows no torch.dtype
# EXPECT: or a torch.dtype such as torch.float16
def kv_gib(shape: ModelShape, seq_len: int, batch: int = 1, dtype="fp16") -> float:
    size = {"fp32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "int8": 1, "int4": 0.5}[dtype]
    per_token = 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim * size
    return per_token * seq_len * batch / 2**30
