# MISTAKE: keys and values share ONE buffer per layer (values overwrite keys) (found by an independent review)
# EXPECT: a separate value buffer
class StaticKVCache:

    def __init__(self, num_layers, batch, num_kv_heads, head_dim, max_seq_len, dtype=torch.float32):
        shape = (batch, num_kv_heads, max_seq_len, head_dim)
        self.max_seq_len = max_seq_len
        self.keys = [torch.zeros(shape, dtype=dtype) for _ in range(num_layers)]
        self.values = self.keys
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
