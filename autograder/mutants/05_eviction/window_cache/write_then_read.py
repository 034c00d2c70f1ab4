# MISTAKE: the new tokens are written into the ring first and the ring is returned, so the result is the last window tokens instead of the kept ones plus all new ones
# EXPECT: before it was read
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
        last = min(T, W)  # only the last W new tokens can survive
        new_slots = torch.arange(seen + T - last, seen + T, device=k.device) % W
        self.keys[layer][:, :, new_slots] = k[:, :, T - last :]
        self.values[layer][:, :, new_slots] = v[:, :, T - last :]
        self.seen[layer] = seen + T
        kept = min(seen + T, W)
        slots = torch.arange(seen + T - kept, seen + T, device=k.device) % W  # oldest first
        k_all = self.keys[layer][:, :, slots]
        v_all = self.values[layer][:, :, slots]
        return k_all, v_all

    @property
    def seq_len(self) -> int:
        return self.seen[0]

    def reset(self) -> None:
        self.keys = [None] * self.num_layers
        self.values = [None] * self.num_layers
        self.seen = [0] * self.num_layers
