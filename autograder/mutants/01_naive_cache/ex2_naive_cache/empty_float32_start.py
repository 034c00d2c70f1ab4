# MISTAKE: starts every layer with torch.empty(0) (float32), so torch.cat promotes float16 keys to float32
# EXPECT: must keep the dtype
class NaiveKVCache:
    """A per-layer key/value cache that grows by concatenation.

    NaiveKVCache(num_layers). update(layer, k, v) takes the keys and values of the new tokens,
    each [B, num_kv_heads, T_new, head_dim], appends them after the ones already stored for that layer
    (on the sequence axis, dim=-2) and returns (k_all, v_all), each [B, num_kv_heads, T_cached + T_new,
    head_dim]. seq_len (a property) is the number of tokens stored in layer 0. reset() empties the cache.
    """

    def __init__(self, num_layers: int) -> None:
        self.num_layers = num_layers
        self.keys = [torch.empty(0) for _ in range(num_layers)]  # no None checks needed
        self.values = [torch.empty(0) for _ in range(num_layers)]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.keys[layer] = torch.cat([self.keys[layer], k], dim=-2)  # [B, H, T + T_new, D]
        self.values[layer] = torch.cat([self.values[layer], v], dim=-2)
        return self.keys[layer], self.values[layer]

    @property
    def seq_len(self) -> int:
        return self.keys[0].shape[-2] if self.keys[0].dim() == 4 else 0

    def reset(self) -> None:
        self.keys = [torch.empty(0) for _ in range(self.num_layers)]
        self.values = [torch.empty(0) for _ in range(self.num_layers)]
