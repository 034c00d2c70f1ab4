# MISTAKE: quantizes a float32 copy of the aged tokens (k_old.float()), casting the dequantized tokens back
# EXPECT: you quantized a float32 copy
class KIVICache:
    def __init__(self, num_layers, bits=2, group_size=32, residual=128):
        self.num_layers = num_layers
        self.bits = bits
        self.group_size = group_size
        self.residual = residual
        self.reset()

    def reset(self):
        self.window_k = [None] * self.num_layers
        self.window_v = [None] * self.num_layers
        self.store_k = [[] for _ in range(self.num_layers)]
        self.store_v = [[] for _ in range(self.num_layers)]

    def update(self, layer, k, v):
        if self.window_k[layer] is None:
            self.window_k[layer] = k.clone()
            self.window_v[layer] = v.clone()
        else:
            self.window_k[layer] = torch.cat([self.window_k[layer], k], dim=-2)
            self.window_v[layer] = torch.cat([self.window_v[layer], v], dim=-2)
        G = self.group_size
        D = k.shape[-1]
        Gv = G if D % G == 0 else D
        while self.window_k[layer].shape[-2] >= self.residual + G:
            old_k = self.window_k[layer][:, :, :G]
            old_v = self.window_v[layer][:, :, :G]
            # quantize in float32 for accuracy; cast back to the cache's dtype when returning
            self.store_k[layer].append(quantize(old_k.float(), self.bits, "kivi", "per_channel", G))
            self.store_v[layer].append(quantize(old_v.float(), self.bits, "kivi", "per_token", Gv))
            self.window_k[layer] = self.window_k[layer][:, :, G:].clone()
            self.window_v[layer] = self.window_v[layer][:, :, G:].clone()
        old_k = [q.dequantize().to(k.dtype) for q in self.store_k[layer]]
        old_v = [q.dequantize().to(v.dtype) for q in self.store_v[layer]]
        k_all = torch.cat(old_k + [self.window_k[layer]], dim=-2)
        v_all = torch.cat(old_v + [self.window_v[layer]], dim=-2)
        return k_all, v_all

    @property
    def seq_len(self):
        if self.window_k[0] is None:
            return 0
        return sum(q.shape[-2] for q in self.store_k[0]) + self.window_k[0].shape[-2]

    def nbytes(self):
        total = 0
        for layer in range(self.num_layers):
            for q in self.store_k[layer] + self.store_v[layer]:
                total += q.nbytes()
            for w in (self.window_k[layer], self.window_v[layer]):
                if w is not None:
                    total += w.numel() * w.element_size()
        return total
