# MISTAKE: seq_len = len(self.keys[0]): len of a tensor is its first dim (the batch size), not the token count (found by an independent review)
# EXPECT: len(tensor)
class NaiveKVCache:
    def __init__(self, num_layers: int) -> None:
        self.num_layers = num_layers
        self.keys = [None] * num_layers
        self.values = [None] * num_layers

    def update(self, layer, k, v):
        if self.keys[layer] is None:
            self.keys[layer], self.values[layer] = k, v
        else:
            self.keys[layer] = torch.cat([self.keys[layer], k], dim=-2)
            self.values[layer] = torch.cat([self.values[layer], v], dim=-2)
        return self.keys[layer], self.values[layer]

    @property
    def seq_len(self) -> int:
        return 0 if self.keys[0] is None else len(self.keys[0])

    def reset(self) -> None:
        self.keys = [None] * self.num_layers
        self.values = [None] * self.num_layers
