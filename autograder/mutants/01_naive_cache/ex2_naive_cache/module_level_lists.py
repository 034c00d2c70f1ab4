# MISTAKE: stores the per-layer lists in module-level variables that __init__ re-creates, so a new cache wipes the one in use
# EXPECT: two instances used in turn
_KEYS: list = []
_VALUES: list = []


class NaiveKVCache:
    """A per-layer key/value cache that grows by concatenation.

    NaiveKVCache(num_layers). update(layer, k, v) takes the keys and values of the new tokens,
    each [B, num_kv_heads, T_new, head_dim], appends them after the ones already stored for that layer
    (on the sequence axis, dim=-2) and returns (k_all, v_all), each [B, num_kv_heads, T_cached + T_new,
    head_dim]. seq_len (a property) is the number of tokens stored in layer 0. reset() empties the cache.
    """

    def __init__(self, num_layers: int) -> None:
        global _KEYS, _VALUES
        self.num_layers = num_layers
        _KEYS, _VALUES = [None] * num_layers, [None] * num_layers

    @property
    def keys(self) -> list:
        return _KEYS

    @property
    def values(self) -> list:
        return _VALUES

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if _KEYS[layer] is None:
            _KEYS[layer], _VALUES[layer] = k, v
        else:
            _KEYS[layer] = torch.cat([_KEYS[layer], k], dim=-2)  # [B, H, T + T_new, D]
            _VALUES[layer] = torch.cat([_VALUES[layer], v], dim=-2)
        return _KEYS[layer], _VALUES[layer]

    @property
    def seq_len(self) -> int:
        return 0 if _KEYS[0] is None else _KEYS[0].shape[-2]

    def reset(self) -> None:
        for i in range(self.num_layers):
            _KEYS[i] = _VALUES[i] = None
