# MISTAKE: reads q as a fraction between 0 and 1
# EXPECT: the 99th percentile is q = 99, not 0.99
import math


def percentile(values, q: float) -> float:
    if not 0 <= q <= 1:
        raise ValueError(f"q must be in [0, 1], got {q}")
    data = sorted(float(v) for v in values if not math.isnan(v))
    if not data:
        return float("nan")
    rank = (len(data) - 1) * q
    lo = math.floor(rank)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (rank - lo)
