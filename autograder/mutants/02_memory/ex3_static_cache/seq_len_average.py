# MISTAKE: seq_len averages the layers' lengths, wrong while a forward pass is halfway through the layers
# EXPECT: between layer updates
class StaticKVCache:
    """A preallocated KV cache: StaticKVCache(num_layers, batch, num_kv_heads, head_dim, max_seq_len, dtype).

    __init__ allocates, for every layer, one key and one value buffer of shape
    [batch, num_kv_heads, max_seq_len, head_dim]. update(layer, k, v) copies the new tokens
    (k, v: [batch, num_kv_heads, T_new, head_dim]) in place into positions [length, length + T_new) of
    that layer's buffers and returns views buffer[:, :, :length + T_new] (no new allocation).
    Keep one length per layer: within a forward pass the layers are updated one after another, so
    layer 0 is already ahead when layer 1 is updated.
    It raises an error with a clear message if the tokens do not fit. seq_len is the number of
    tokens stored in layer 0; reset() sets every layer's length back to 0 (the buffers stay).
    """

    def __init__(self, num_layers: int, batch: int, num_kv_heads: int, head_dim: int, max_seq_len: int,
                 dtype: torch.dtype = torch.float32) -> None:
        shape = (batch, num_kv_heads, max_seq_len, head_dim)
        self.max_seq_len = max_seq_len
        self.keys = [torch.zeros(shape, dtype=dtype) for _ in range(num_layers)]
        self.values = [torch.zeros(shape, dtype=dtype) for _ in range(num_layers)]
        self.lengths = [0] * num_layers
    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        start = self.lengths[layer]
        end = start + k.shape[-2]
        if end > self.max_seq_len:
            raise RuntimeError(f"cache full: {start} + {k.shape[-2]} tokens > max_seq_len={self.max_seq_len}")
        self.keys[layer][:, :, start:end] = k  # in-place copy into the buffer
        self.values[layer][:, :, start:end] = v
        self.lengths[layer] = end
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]  # views, no copy
    @property
    def seq_len(self) -> int:
        return sum(self.lengths) // len(self.lengths)
    def reset(self) -> None:
        self.lengths = [0] * len(self.lengths)
