# MISTAKE: the buffers and counts live in class attributes, shared by every WindowCache
# EXPECT: share state
class WindowCache:
    """A sliding-window KV cache: the last `window` tokens of every layer, in a ring buffer."""

    keys: dict = {}
    values: dict = {}
    seen: dict = {}

    def __init__(self, num_layers: int, window: int) -> None:
        self.num_layers = num_layers
        self.window = window
        if not self.seen:
            self.reset()

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, kv_heads, T, D = k.shape
        W, seen = self.window, self.seen[layer]
        if self.keys[layer] is None:
            self.keys[layer] = k.new_zeros(B, kv_heads, W, D)
            self.values[layer] = v.new_zeros(B, kv_heads, W, D)
        kept = min(seen, W)
        old_slots = torch.arange(seen - kept, seen, device=k.device) % W  # oldest first
        k_all = torch.cat([self.keys[layer][:, :, old_slots], k], dim=2)
        v_all = torch.cat([self.values[layer][:, :, old_slots], v], dim=2)
        last = min(T, W)  # only the last W new tokens can survive
        new_slots = torch.arange(seen + T - last, seen + T, device=k.device) % W
        self.keys[layer][:, :, new_slots] = k[:, :, T - last :]
        self.values[layer][:, :, new_slots] = v[:, :, T - last :]
        self.seen[layer] = seen + T
        return k_all, v_all

    @property
    def seq_len(self) -> int:
        return self.seen[0]

    def reset(self) -> None:
        for layer in range(self.num_layers):
            self.keys[layer] = self.values[layer] = None
            self.seen[layer] = 0
