# MISTAKE: positions are floats, which cannot index an embedding table
# EXPECT: torch.long
import torch


def new_token_positions(cache_len: int, n_new: int) -> torch.Tensor:
    return torch.arange(cache_len, cache_len + n_new, dtype=torch.float32)
