# MISTAKE: results are memoised by n_new alone, so a second call with another cache_len gets the old answer
# EXPECT: earlier call
import torch

_memo = {}


def new_token_positions(cache_len: int, n_new: int) -> torch.Tensor:
    if n_new not in _memo:
        _memo[n_new] = torch.arange(cache_len, cache_len + n_new)
    return _memo[n_new]
