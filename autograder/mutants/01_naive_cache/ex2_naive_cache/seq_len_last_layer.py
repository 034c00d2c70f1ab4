# MISTAKE: seq_len reads the LAST layer, wrong between the layers' updates of one forward pass (found by an independent review)
# EXPECT: before the other layers of this step
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
        return 0 if self.keys[-1] is None else self.keys[-1].shape[-2]

    def reset(self) -> None:
        self.keys = [None] * self.num_layers
        self.values = [None] * self.num_layers
