# MISTAKE: interpolates in the order the values came, without sorting
# EXPECT: sort the values first
import math


def percentile(values, q: float) -> float:
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    data = [float(v) for v in values if not math.isnan(v)]
    if not data:
        return float("nan")
    rank = (len(data) - 1) * q / 100
    lo = math.floor(rank)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (rank - lo)
