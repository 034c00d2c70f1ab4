# MISTAKE: n_new = 0 returns torch.tensor([]), which is float32, not an empty long tensor
# EXPECT: pass dtype=torch.long
import torch


def new_token_positions(cache_len: int, n_new: int) -> torch.Tensor:
    if n_new == 0:
        return torch.tensor([])
    return torch.arange(cache_len, cache_len + n_new)
