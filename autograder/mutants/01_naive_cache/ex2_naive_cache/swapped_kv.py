# MISTAKE: returns (values, keys) in the wrong order
# EXPECT: instead of the keys
class NaiveKVCache:
    """A per-layer key/value cache that grows by concatenation.

    NaiveKVCache(num_layers). update(layer, k, v) takes the keys and values of the new tokens,
    each [B, num_kv_heads, T_new, head_dim], appends them after the ones already stored for that layer
    (on the sequence axis, dim=-2) and returns (k_all, v_all), each [B, num_kv_heads, T_cached + T_new,
    head_dim]. seq_len (a property) is the number of tokens stored in layer 0. reset() empties the cache.
    """

    def __init__(self, num_layers: int) -> None:
        self.num_layers = num_layers
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.keys[layer] is None:
            self.keys[layer], self.values[layer] = k, v
        else:
            self.keys[layer] = torch.cat([self.keys[layer], k], dim=-2)  # [B, H, T + T_new, D]
            self.values[layer] = torch.cat([self.values[layer], v], dim=-2)
        return self.values[layer], self.keys[layer]

    @property
    def seq_len(self) -> int:
        return 0 if self.keys[0] is None else self.keys[0].shape[-2]

    def reset(self) -> None:
        self.keys = [None] * self.num_layers
        self.values = [None] * self.num_layers
