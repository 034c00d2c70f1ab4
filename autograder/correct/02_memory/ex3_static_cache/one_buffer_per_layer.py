# VALID: one [2, B, H, T, D] buffer per layer holding keys and values, ValueError when full
class StaticKVCache:
    def __init__(self, num_layers, batch, num_kv_heads, head_dim, max_seq_len, dtype=torch.float32):
        self.kv = [torch.empty(2, batch, num_kv_heads, max_seq_len, head_dim, dtype=dtype)
                   for _ in range(num_layers)]
        self.max_seq_len, self.lengths = max_seq_len, [0] * num_layers
    def update(self, layer, k, v):
        start, n = self.lengths[layer], k.shape[2]
        if start + n > self.max_seq_len:
            raise ValueError(f'no room for {n} more tokens: {start} of {self.max_seq_len} used')
        self.kv[layer][0].narrow(2, start, n).copy_(k)
        self.kv[layer][1].narrow(2, start, n).copy_(v)
        self.lengths[layer] = start + n
        return self.kv[layer][0, :, :, :start + n], self.kv[layer][1, :, :, :start + n]
    @property
    def seq_len(self):
        return self.lengths[0]
    def reset(self):
        for i in range(len(self.lengths)):
            self.lengths[i] = 0
