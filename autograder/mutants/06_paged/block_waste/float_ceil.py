# MISTAKE: rounds n / B to the nearest integer instead of up, so a block can be missing
# EXPECT: expected
def block_waste(lengths: list[int], shares: list[float], block_size: int) -> float:
    alloc = sum(s * round(n / block_size) * block_size for n, s in zip(lengths, shares))
    tokens = sum(s * n for n, s in zip(lengths, shares))
    return (alloc - tokens) / alloc
