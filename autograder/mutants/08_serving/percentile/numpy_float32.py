# MISTAKE: returns NumPy's number as it is: a float32 for a float32 array
# EXPECT: must be a Python float
import numpy as np


def percentile(values, q: float) -> float:
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    a = np.asarray(values)
    a = a[~np.isnan(a)]
    if a.size == 0:
        return float("nan")
    return np.percentile(a, q)
