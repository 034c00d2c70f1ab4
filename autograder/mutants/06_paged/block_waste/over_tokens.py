# MISTAKE: divides the empty slots by the tokens instead of the allocated slots
# EXPECT: divide by the allocated slots
import math


def block_waste(lengths: list[int], shares: list[float], block_size: int) -> float:
    alloc = sum(s * math.ceil(n / block_size) * block_size for n, s in zip(lengths, shares))
    tokens = sum(s * n for n, s in zip(lengths, shares))
    return (alloc - tokens) / tokens
