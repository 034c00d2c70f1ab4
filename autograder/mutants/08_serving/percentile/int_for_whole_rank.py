# MISTAKE: returns v[lo] as it is when the rank is whole: an int for integer values
# EXPECT: must be a Python float
import math


def percentile(values, q: float) -> float:
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    data = sorted(v for v in values if not math.isnan(v))
    if not data:
        return float("nan")
    rank = (len(data) - 1) * q / 100
    lo = math.floor(rank)
    if rank == lo:
        return data[lo]
    return data[lo] + (data[lo + 1] - data[lo]) * (rank - lo)
