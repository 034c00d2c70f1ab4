# MISTAKE: NaN values are sorted along with the numbers instead of being left out
# EXPECT: NaN
import math


def percentile(values, q: float) -> float:
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    data = sorted(float(v) for v in values)
    if not data:
        return float("nan")
    rank = (len(data) - 1) * q / 100
    lo = math.floor(rank)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (rank - lo)
