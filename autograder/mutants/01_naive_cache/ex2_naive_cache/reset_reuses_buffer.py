# MISTAKE: grows a preallocated buffer and returns views of it; reset() only rewinds the length, so the next sequence overwrites tensors handed out before
# EXPECT: overwrote in place
class NaiveKVCache:
    """A per-layer key/value cache that grows by concatenation.

    NaiveKVCache(num_layers). update(layer, k, v) takes the keys and values of the new tokens,
    each [B, num_kv_heads, T_new, head_dim], appends them after the ones already stored for that layer
    (on the sequence axis, dim=-2) and returns (k_all, v_all), each [B, num_kv_heads, T_cached + T_new,
    head_dim]. seq_len (a property) is the number of tokens stored in layer 0. reset() empties the cache.
    """

    def __init__(self, num_layers: int) -> None:
        self.num_layers = num_layers
        self._kbuf: list[torch.Tensor | None] = [None] * num_layers  # capacity doubles when full
        self._vbuf: list[torch.Tensor | None] = [None] * num_layers
        self._len = [0] * num_layers
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, t = self._len[layer], k.shape[-2]
        buf = self._kbuf[layer]
        if buf is None or buf.shape[-2] < n + t or buf.shape[0] != k.shape[0]:
            B, H, _, D = k.shape
            new_k = k.new_empty(B, H, 2 * (n + t), D)
            new_v = v.new_empty(B, H, 2 * (n + t), D)
            if n:
                new_k[:, :, :n] = self._kbuf[layer][:, :, :n]
                new_v[:, :, :n] = self._vbuf[layer][:, :, :n]
            self._kbuf[layer], self._vbuf[layer] = new_k, new_v
        self._kbuf[layer][:, :, n : n + t] = k  # amortised O(1) append instead of torch.cat
        self._vbuf[layer][:, :, n : n + t] = v
        self._len[layer] = n + t
        self.keys[layer] = self._kbuf[layer][:, :, : n + t]
        self.values[layer] = self._vbuf[layer][:, :, : n + t]
        return self.keys[layer], self.values[layer]

    @property
    def seq_len(self) -> int:
        return self._len[0]

    def reset(self) -> None:
        self._len = [0] * self.num_layers  # keep the buffers for the next sequence
        self.keys = [None] * self.num_layers
        self.values = [None] * self.num_layers
