# MISTAKE: positions are sliced from a table of 256 precomputed positions, wrong past 256 tokens
# EXPECT: precomputed table
import torch

POSITIONS = torch.arange(256)


def new_token_positions(cache_len: int, n_new: int) -> torch.Tensor:
    return POSITIONS[cache_len : cache_len + n_new].clone()
