# MISTAKE: treats every length as one sequence, ignoring the proportions
# EXPECT: the shares are ignored
import math


def block_waste(lengths: list[int], shares: list[float], block_size: int) -> float:
    alloc = sum(math.ceil(n / block_size) * block_size for n in lengths)
    return (alloc - sum(lengths)) / alloc
