# VALID: numpy.percentile (linear, its default) on the values with the NaN masked out
import numpy as np


def percentile(values, q: float) -> float:
    if q < 0 or q > 100:
        raise ValueError(f"q = {q} is outside 0..100")
    a = np.asarray(values, dtype=np.float64)
    a = a[~np.isnan(a)]
    if a.size == 0:
        return float("nan")
    return float(np.percentile(a, q))
