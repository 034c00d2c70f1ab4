# MISTAKE: places the percentile at rank n * q / 100 (clamped to the last value)
# EXPECT: not n * q / 100
import math


def percentile(values, q: float) -> float:
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    data = sorted(float(v) for v in values if not math.isnan(v))
    if not data:
        return float("nan")
    rank = min(len(data) * q / 100, len(data) - 1)
    lo = math.floor(rank)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (rank - lo)
