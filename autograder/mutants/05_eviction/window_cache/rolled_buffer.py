# MISTAKE: the buffer is kept oldest first and rolled at every step (torch.roll allocates a new tensor), not written in place at slot p % window
# EXPECT: shifted at every step
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
            self.keys[layer] = k.new_zeros(B, kv_heads, W, D)
            self.values[layer] = v.new_zeros(B, kv_heads, W, D)
        kept = min(seen, W)
        k_all = torch.cat([self.keys[layer][:, :, W - kept :], k], dim=2)  # slots hold oldest first
        v_all = torch.cat([self.values[layer][:, :, W - kept :], v], dim=2)
        last = min(T, W)
        self.keys[layer] = torch.roll(self.keys[layer], -last, dims=2)
        self.values[layer] = torch.roll(self.values[layer], -last, dims=2)
        self.keys[layer][:, :, W - last :] = k[:, :, T - last :]
        self.values[layer][:, :, W - last :] = v[:, :, T - last :]
        self.seen[layer] = seen + T
        return k_all, v_all

    @property
    def seq_len(self) -> int:
        return self.seen[0]

    def reset(self) -> None:
        self.keys = [None] * self.num_layers
        self.values = [None] * self.num_layers
        self.seen = [0] * self.num_layers
