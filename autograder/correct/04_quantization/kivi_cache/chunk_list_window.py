# VALID: keeps the window as a list of copied chunks (joined only when a group ages or on return), ages one group at a time by splitting chunks, counts bytes by walking everything stored
class KIVICache:
    def __init__(self, num_layers: int, bits: int = 2, group_size: int = 32, residual: int = 128):
        self.num_layers, self.bits, self.group_size, self.residual = num_layers, bits, group_size, residual
        self.reset()

    def reset(self) -> None:
        self.windows = [[] for _ in range(self.num_layers)]  # per layer: list of (k, v) chunks, own copies
        self.stores = [[] for _ in range(self.num_layers)]  # per layer: list of (qk, qv), one per group

    def _window_len(self, layer):
        return sum(k.shape[-2] for k, _ in self.windows[layer])

    def _take_oldest(self, layer, n):
        """Remove the oldest n tokens of the window and return them as (k, v)."""
        taken_k, taken_v, chunks = [], [], self.windows[layer]
        while n > 0:
            k, v = chunks.pop(0)
            if k.shape[-2] > n:  # split: the rest goes back to the front, as a copy
                chunks.insert(0, (k[..., n:, :].clone(), v[..., n:, :].clone()))
                k, v = k[..., :n, :], v[..., :n, :]
            taken_k.append(k)
            taken_v.append(v)
            n -= k.shape[-2]
        return torch.cat(taken_k, dim=-2), torch.cat(taken_v, dim=-2)

    def update(self, layer, k, v):
        self.windows[layer].append((k.clone(), v.clone()))
        G = self.group_size
        head_dim = k.shape[-1]
        value_group = head_dim if head_dim % G else G
        while self._window_len(layer) >= self.residual + G:
            old_k, old_v = self._take_oldest(layer, G)
            self.stores[layer].append(
                (
                    quantize(old_k, self.bits, "kivi", "per_channel", G),
                    quantize(old_v, self.bits, "kivi", "per_token", value_group),
                )
            )
        k_parts = [qk.dequantize() for qk, _ in self.stores[layer]] + [c[0] for c in self.windows[layer]]
        v_parts = [qv.dequantize() for _, qv in self.stores[layer]] + [c[1] for c in self.windows[layer]]
        return torch.cat(k_parts, dim=-2), torch.cat(v_parts, dim=-2)

    @property
    def seq_len(self) -> int:
        return self.group_size * len(self.stores[0]) + self._window_len(0)

    def nbytes(self) -> int:
        total = 0
        for layer in range(self.num_layers):
            for qk, qv in self.stores[layer]:
                total += qk.nbytes() + qv.nbytes()
            for k, v in self.windows[layer]:
                total += k.numel() * k.element_size() + v.numel() * v.element_size()
        return total
