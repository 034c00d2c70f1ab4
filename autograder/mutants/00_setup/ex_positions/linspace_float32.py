# MISTAKE: linspace in float32 then .long(): wrong for cache_len past 2**24 (float32 rounding) (found by an independent review)
# EXPECT: cache_len=16777217
import torch
def new_token_positions(cache_len: int, n_new: int) -> torch.Tensor:
    return torch.linspace(cache_len, cache_len + n_new - 1, n_new).long()
