# MISTAKE: consumes the lists it was given while summing
# EXPECT: changed the lists it was given
import math


def block_waste(lengths: list[int], shares: list[float], block_size: int) -> float:
    alloc = tokens = 0.0
    while lengths:
        n, s = lengths.pop(), shares.pop()
        alloc += s * math.ceil(n / block_size) * block_size
        tokens += s * n
    return (alloc - tokens) / alloc
