# MISTAKE: returns the int 0 early when every length fills its blocks exactly
# EXPECT: you returned the int 0
import math


def block_waste(lengths: list[int], shares: list[float], block_size: int) -> float:
    alloc = sum(s * math.ceil(n / block_size) * block_size for n, s in zip(lengths, shares))
    tokens = sum(s * n for n, s in zip(lengths, shares))
    if alloc == tokens:
        return 0
    return (alloc - tokens) / alloc
