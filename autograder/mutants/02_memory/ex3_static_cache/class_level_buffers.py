# MISTAKE: buffer lists are class attributes appended to in __init__: a second cache shares (and indexes) the first one's buffers (found by an independent review)
# EXPECT: no tensor is reachable from the object
class StaticKVCache:

    keys = []
    values = []
    lengths = []

    def __init__(self, num_layers, batch, num_kv_heads, head_dim, max_seq_len, dtype=torch.float32):
        shape = (batch, num_kv_heads, max_seq_len, head_dim)
        self.max_seq_len = max_seq_len
        for _ in range(num_layers):
            self.keys.append(torch.zeros(shape, dtype=dtype))
            self.values.append(torch.zeros(shape, dtype=dtype))
            self.lengths.append(0)

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
        for i in range(len(self.lengths)):
            self.lengths[i] = 0
