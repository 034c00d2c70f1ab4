# VALID: one small object per layer (nested attributes), torch.empty buffers, tokens written one at a time in a Python loop, the kept tokens gathered slot by slot
class _Layer:
    def __init__(self):
        self.k = None
        self.v = None
        self.seen = 0


class WindowCache:
    """A sliding-window KV cache: the last `window` tokens of every layer, in a ring buffer."""

    def __init__(self, num_layers: int, window: int) -> None:
        self.num_layers = num_layers
        self.window = window
        self.reset()

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        state = self.layers[layer]
        W = self.window
        if state.k is None:
            B, kv, _, D = k.shape
            state.k = torch.empty((B, kv, W, D), dtype=k.dtype, device=k.device)
            state.v = torch.empty((B, kv, W, D), dtype=v.dtype, device=v.device)
        first_kept = max(0, state.seen - W)
        old_k = [state.k[:, :, p % W : p % W + 1] for p in range(first_kept, state.seen)]
        old_v = [state.v[:, :, p % W : p % W + 1] for p in range(first_kept, state.seen)]
        k_all = torch.cat(old_k + [k], dim=2)  # cat copies the slices
        v_all = torch.cat(old_v + [v], dim=2)
        T = k.shape[2]
        for t in range(max(0, T - W), T):  # earlier ones would be overwritten anyway
            slot = (state.seen + t) % W
            state.k[:, :, slot] = k[:, :, t]
            state.v[:, :, slot] = v[:, :, t]
        state.seen += T
        return k_all, v_all

    @property
    def seq_len(self) -> int:
        return self.layers[0].seen

    def reset(self) -> None:
        self.layers = [_Layer() for _ in range(self.num_layers)]
