# VALID: clones on first store (defensive), cats afterwards (from an independent review)
class NaiveKVCache:
    def __init__(self, num_layers: int) -> None:
        self.num_layers = num_layers
        self.keys = [None for _ in range(num_layers)]
        self.values = [None for _ in range(num_layers)]

    def update(self, layer, k, v):
        if self.keys[layer] is None:
            self.keys[layer], self.values[layer] = k.clone(), v.clone()
        else:
            self.keys[layer] = torch.cat((self.keys[layer], k), dim=2)
            self.values[layer] = torch.cat((self.values[layer], v), dim=2)
        return self.keys[layer], self.values[layer]

    @property
    def seq_len(self):
        return 0 if self.keys[0] is None else int(self.keys[0].size(2))

    def reset(self):
        self.__init__(self.num_layers)
