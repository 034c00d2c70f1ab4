# VALID: narrow().copy_() writes, torch.empty buffers, length per layer in a dict (from an independent review)
class StaticKVCache:

    def __init__(self, num_layers, batch, num_kv_heads, head_dim, max_seq_len, dtype=torch.float32):
        self.max_seq_len = max_seq_len
        self.keys = [torch.empty(batch, num_kv_heads, max_seq_len, head_dim, dtype=dtype) for _ in range(num_layers)]
        self.values = [torch.empty(batch, num_kv_heads, max_seq_len, head_dim, dtype=dtype) for _ in range(num_layers)]
        self.lengths = {i: 0 for i in range(num_layers)}

    def update(self, layer, k, v):
        n, start = k.shape[2], self.lengths[layer]
        if start + n > self.max_seq_len:
            raise ValueError(f"StaticKVCache overflow: {start} cached + {n} new > capacity {self.max_seq_len}")
        self.keys[layer].narrow(2, start, n).copy_(k)
        self.values[layer].narrow(2, start, n).copy_(v)
        self.lengths[layer] = start + n
        return self.keys[layer].narrow(2, 0, start + n), self.values[layer].narrow(2, 0, start + n)

    @property
    def seq_len(self):
        return self.lengths[0]

    def reset(self):
        for i in self.lengths:
            self.lengths[i] = 0
