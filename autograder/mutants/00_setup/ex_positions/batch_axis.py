# MISTAKE: returns positions with a batch axis, shape [1, n_new], instead of a 1-D tensor
# EXPECT: no batch axis
import torch


def new_token_positions(cache_len: int, n_new: int) -> torch.Tensor:
    return torch.arange(cache_len, cache_len + n_new).unsqueeze(0)
