# MISTAKE: counts n // B + 1 blocks, one too many when a length fills its blocks exactly
# EXPECT: a whole extra block
def block_waste(lengths: list[int], shares: list[float], block_size: int) -> float:
    alloc = sum(s * (n // block_size + 1) * block_size for n, s in zip(lengths, shares))
    tokens = sum(s * n for n, s in zip(lengths, shares))
    return (alloc - tokens) / alloc
