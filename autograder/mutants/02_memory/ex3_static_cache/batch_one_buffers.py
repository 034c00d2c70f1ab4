# MISTAKE: allocates batch 1 regardless of the batch argument (found by an independent review)
# EXPECT: the size for batch 1
class StaticKVCache:

    def __init__(self, num_layers, batch, num_kv_heads, head_dim, max_seq_len, dtype=torch.float32):
        shape = (1, num_kv_heads, max_seq_len, head_dim)
        self.max_seq_len = max_seq_len
        self.keys = [torch.zeros(shape, dtype=dtype) for _ in range(num_layers)]
        self.values = [torch.zeros(shape, dtype=dtype) for _ in range(num_layers)]
        self.lengths = [0] * num_layers

    def update(self, layer, k, v):
        start = self.lengths[layer]
        end = start + k.shape[-2]
        if end > self.max_seq_len:
            raise RuntimeError(f"cache full: {start} + {k.shape[-2]} tokens > max_seq_len={self.max_seq_len}")
        self.keys[layer][:, :, start:end] = k
        self.values[layer][:, :, start:end] = v
        self.lengths[layer] = end
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    @property
    def seq_len(self):
        return self.lengths[0]

    def reset(self):
        self.lengths = [0] * len(self.lengths)
