# MISTAKE: quantizes all the keys aged in one update at once without group_size, so they share one scale per channel instead of one per group of G tokens
# EXPECT: as one per-channel group
class _Layer:
    def __init__(self, k, v):
        self.k = k[:, :, :0].clone()  # (B, KV, 0, D): the window, in the input's dtype
        self.v = v[:, :, :0].clone()
        self.quantized = []  # (QuantizedTensor keys, QuantizedTensor values), oldest first
        self.count = 0


class KIVICache:
    def __init__(self, num_layers, bits=2, group_size=32, residual=128):
        self.num_layers = num_layers
        self.bits = bits
        self.group_size = group_size
        self.residual = residual
        self._layers = {}

    def update(self, layer, k, v):
        state = self._layers.get(layer)
        if state is None:
            state = self._layers[layer] = _Layer(k, v)
        state.k = torch.cat((state.k, k), dim=2)
        state.v = torch.cat((state.v, v), dim=2)
        state.count += k.shape[2]
        G, D = self.group_size, k.shape[3]
        n_old = max(0, (state.k.shape[2] - self.residual) // G) * G  # whole groups past the window
        if n_old:
            qk = quantize(state.k[:, :, :n_old], self.bits, "kivi", "per_channel")
            qv = quantize(state.v[:, :, :n_old], self.bits, "kivi", "per_token", G if D % G == 0 else D)
            state.quantized.append((qk, qv))
            state.k = state.k[:, :, n_old:].contiguous().clone()
            state.v = state.v[:, :, n_old:].contiguous().clone()
        keys = [qk.dequantize() for qk, _ in state.quantized] + [state.k]
        values = [qv.dequantize() for _, qv in state.quantized] + [state.v]
        return torch.cat(keys, dim=2), torch.cat(values, dim=2)

    @property
    def seq_len(self):
        return self._layers[0].count if 0 in self._layers else 0

    def reset(self):
        self._layers = {}

    def nbytes(self):
        total = 0
        for state in self._layers.values():
            total += sum(qk.nbytes() + qv.nbytes() for qk, qv in state.quantized)
            total += state.k.numel() * state.k.element_size() + state.v.numel() * state.v.element_size()
        return total
