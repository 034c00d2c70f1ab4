# VALID: arange(n) + offset (from an independent review)
import torch
def new_token_positions(cache_len: int, n_new: int) -> torch.Tensor:
    return torch.arange(n_new, dtype=torch.long) + cache_len
