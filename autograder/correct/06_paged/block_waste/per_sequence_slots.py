# VALID: counts the empty slots of each length as (-n) % B and normalises the shares first
def block_waste(lengths: list[int], shares: list[float], block_size: int) -> float:
    weights = [s / sum(shares) for s in shares]
    empty = sum(w * ((-n) % block_size) for n, w in zip(lengths, weights))
    used = sum(w * n for n, w in zip(lengths, weights))
    return empty / (used + empty)
