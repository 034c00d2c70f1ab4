# MISTAKE: the first new token is placed at cache_len + 1 (off by one)
# EXPECT: one too high
import torch


def new_token_positions(cache_len: int, n_new: int) -> torch.Tensor:
    return torch.arange(cache_len + 1, cache_len + n_new + 1)
