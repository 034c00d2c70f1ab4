# MISTAKE: clamps q into 0..100 instead of raising ValueError
# EXPECT: raise ValueError
import math


def percentile(values, q: float) -> float:
    q = min(max(q, 0), 100)
    data = sorted(float(v) for v in values if not math.isnan(v))
    if not data:
        return float("nan")
    rank = (len(data) - 1) * q / 100
    lo = math.floor(rank)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (rank - lo)
