# MISTAKE: no ring buffer: each update concatenates and keeps the last window tokens (a new tensor every step)
# EXPECT: holds no key buffer
class WindowCache:
    """A sliding-window KV cache: the last `window` tokens of every layer, in a ring buffer."""

    def __init__(self, num_layers: int, window: int) -> None:
        self.num_layers = num_layers
        self.window = window
        self.reset()

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, kv_heads, T, D = k.shape
        W, seen = self.window, self.seen[layer]
        if self.keys[layer] is None:
            k_all, v_all = k.clone(), v.clone()
        else:
            k_all = torch.cat([self.keys[layer], k], dim=2)
            v_all = torch.cat([self.values[layer], v], dim=2)
        self.keys[layer] = k_all[:, :, -W:].clone()
        self.values[layer] = v_all[:, :, -W:].clone()
        self.seen[layer] = seen + T
        return k_all, v_all

    @property
    def seq_len(self) -> int:
        return self.seen[0]

    def reset(self) -> None:
        self.keys = [None] * self.num_layers
        self.values = [None] * self.num_layers
        self.seen = [0] * self.num_layers
