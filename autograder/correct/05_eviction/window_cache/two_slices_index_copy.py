# VALID: reads the ring as two contiguous slices (no index tensor), writes with index_copy_, returns k and v themselves on a layer's first update (nothing kept yet), buffers in a dict of (keys, values) pairs
class WindowCache:
    """A sliding-window KV cache: the last `window` tokens of every layer, in a ring buffer."""

    def __init__(self, num_layers: int, window: int) -> None:
        self.num_layers = num_layers
        self.window = window
        self.reset()

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        W = self.window
        n = self.counts[layer]
        if layer not in self.rings:
            shape = (k.shape[0], k.shape[1], W, k.shape[3])
            self.rings[layer] = (k.new_zeros(shape), v.new_zeros(shape))
        keys, values = self.rings[layer]
        if n == 0:
            k_all, v_all = k, v
        elif n <= W:
            k_all = torch.cat([keys[:, :, :n], k], dim=2)
            v_all = torch.cat([values[:, :, :n], v], dim=2)
        else:
            start = n % W  # the oldest kept token's slot
            k_all = torch.cat([keys[:, :, start:], keys[:, :, :start], k], dim=2)
            v_all = torch.cat([values[:, :, start:], values[:, :, :start], v], dim=2)
        T = k.shape[2]
        m = min(T, W)
        slots = (torch.arange(n + T - m, n + T) % W).to(k.device)
        keys.index_copy_(2, slots, k[:, :, T - m :])
        values.index_copy_(2, slots, v[:, :, T - m :])
        self.counts[layer] = n + T
        return k_all, v_all

    @property
    def seq_len(self) -> int:
        return self.counts[0]

    def reset(self) -> None:
        self.rings = {}
        self.counts = [0] * self.num_layers
