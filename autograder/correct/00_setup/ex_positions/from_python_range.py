# VALID: builds the positions from a Python range, with the dtype given explicitly
def new_token_positions(cache_len, n_new):
    return torch.tensor(list(range(cache_len, cache_len + n_new)), dtype=torch.long)
