# MISTAKE: returns NaN for no values before checking q, so a q of 150 passes unnoticed
# EXPECT: also when no value is left
import math


def percentile(values, q: float) -> float:
    data = sorted(float(v) for v in values if not math.isnan(v))
    if not data:
        return float("nan")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    rank = (len(data) - 1) * q / 100
    lo = math.floor(rank)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (rank - lo)
