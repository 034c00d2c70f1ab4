# MISTAKE: the range includes its end, so one position too many is returned
# EXPECT: off by one
import torch


def new_token_positions(cache_len: int, n_new: int) -> torch.Tensor:
    return torch.arange(cache_len, cache_len + n_new + 1)
