# MISTAKE: seq_len is the largest count of any layer instead of layer 0's
# EXPECT: the tokens layer 0 has seen
class WindowCache:
    def __init__(self, num_layers: int, window: int) -> None:
        self.num_layers = num_layers
        self.window = window
        self.reset()

    def update(self, layer, k, v):
        B, kv_heads, T, D = k.shape
        W, seen = self.window, self.seen[layer]
        if self.keys[layer] is None:
            self.keys[layer] = k.new_zeros(B, kv_heads, W, D)
            self.values[layer] = v.new_zeros(B, kv_heads, W, D)
        kept = min(seen, W)
        old_slots = torch.arange(seen - kept, seen, device=k.device) % W
        k_all = torch.cat([self.keys[layer][:, :, old_slots], k], dim=2)
        v_all = torch.cat([self.values[layer][:, :, old_slots], v], dim=2)
        last = min(T, W)
        new_slots = torch.arange(seen + T - last, seen + T, device=k.device) % W
        self.keys[layer][:, :, new_slots] = k[:, :, T - last :]
        self.values[layer][:, :, new_slots] = v[:, :, T - last :]
        self.seen[layer] = seen + T
        return k_all, v_all

    @property
    def seq_len(self):
        return max(self.seen)

    def reset(self):
        self.keys = [None] * self.num_layers
        self.values = [None] * self.num_layers
        self.seen = [0] * self.num_layers
