# MISTAKE: computes with torch tensors and returns a one-element tensor
# EXPECT: the docstring promises a float
def kv_gib(shape: ModelShape, seq_len: int, batch: int = 1, dtype="fp16") -> float:
    sizes = torch.tensor([2, shape.num_layers, shape.num_kv_heads, shape.head_dim, seq_len, batch])
    return sizes.double().prod() * bytes_per_element(dtype) / 2**30
