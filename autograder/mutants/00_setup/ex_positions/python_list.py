# MISTAKE: returns a Python list instead of a tensor
# EXPECT: torch.Tensor
def new_token_positions(cache_len: int, n_new: int):
    return list(range(cache_len, cache_len + n_new))
