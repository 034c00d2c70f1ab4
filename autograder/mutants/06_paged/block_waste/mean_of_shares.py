# MISTAKE: averages each length's waste share instead of dividing the summed slots
# EXPECT: weighted mean of each length's waste share
import math


def block_waste(lengths: list[int], shares: list[float], block_size: int) -> float:
    total = 0.0
    for n, s in zip(lengths, shares):
        alloc = math.ceil(n / block_size) * block_size
        total += s * (alloc - n) / alloc
    return total / sum(shares)
