# MISTAKE: positions are torch.int (int32), not torch.long, so they do not index like token ids
# EXPECT: must be torch.long
import torch


def new_token_positions(cache_len: int, n_new: int) -> torch.Tensor:
    return torch.arange(cache_len, cache_len + n_new, dtype=torch.int)
