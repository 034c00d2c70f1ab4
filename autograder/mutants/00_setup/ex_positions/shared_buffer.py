# MISTAKE: every call writes into one preallocated buffer and returns a view of it, so a later call overwrites earlier results
# EXPECT: changed after a later call
import torch

_buffer = torch.zeros(8192, dtype=torch.long)


def new_token_positions(cache_len: int, n_new: int) -> torch.Tensor:
    out = _buffer[:n_new]
    out.copy_(torch.arange(cache_len, cache_len + n_new))
    return out
