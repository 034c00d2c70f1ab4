# MISTAKE: rounds the rank to the nearest value instead of interpolating
# EXPECT: not interpolated
import math


def percentile(values, q: float) -> float:
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    data = sorted(float(v) for v in values if not math.isnan(v))
    if not data:
        return float("nan")
    return data[round((len(data) - 1) * q / 100)]
