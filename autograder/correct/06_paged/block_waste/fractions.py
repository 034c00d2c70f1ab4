# VALID: exact arithmetic with fractions over one loop, returning a float
from fractions import Fraction


def block_waste(lengths: list[int], shares: list[float], block_size: int) -> float:
    allocated = tokens = Fraction(0)
    for n, s in zip(lengths, shares):
        blocks = (n + block_size - 1) // block_size
        allocated += Fraction(s) * blocks * block_size
        tokens += Fraction(s) * n
    return float(1 - tokens / allocated)
