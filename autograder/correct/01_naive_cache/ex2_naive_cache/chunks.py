# VALID: keeps a list of chunks per layer; keys/values exposed as properties concatenating them (from an independent review)
class NaiveKVCache:
    def __init__(self, num_layers: int) -> None:
        self.num_layers = num_layers
        self._k = [[] for _ in range(num_layers)]
        self._v = [[] for _ in range(num_layers)]

    @property
    def keys(self):
        return [torch.cat(c, dim=-2) if c else None for c in self._k]

    @property
    def values(self):
        return [torch.cat(c, dim=-2) if c else None for c in self._v]

    def update(self, layer, k, v):
        self._k[layer].append(k)
        self._v[layer].append(v)
        return torch.cat(self._k[layer], dim=-2), torch.cat(self._v[layer], dim=-2)

    @property
    def seq_len(self) -> int:
        return sum(t.shape[-2] for t in self._k[0])

    def reset(self) -> None:
        self._k = [[] for _ in range(self.num_layers)]
        self._v = [[] for _ in range(self.num_layers)]
