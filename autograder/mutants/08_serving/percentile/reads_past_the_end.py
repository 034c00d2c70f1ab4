# MISTAKE: always reads v[lo + 1], past the end when q = 100
# EXPECT: for q = 0 or 100 the rank r is a whole number
import math


def percentile(values, q: float) -> float:
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    data = sorted(float(v) for v in values if not math.isnan(v))
    if not data:
        return float("nan")
    rank = (len(data) - 1) * q / 100
    lo = math.floor(rank)
    return data[lo] + (data[lo + 1] - data[lo]) * (rank - lo)
