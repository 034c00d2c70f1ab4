# VALID: numpy.nanpercentile (skips the NaN itself), NaN returned before it for no finite value
import math

import numpy as np


def percentile(values, q: float) -> float:
    if not (0 <= q <= 100):
        raise ValueError("q must be a percentage between 0 and 100")
    a = np.array(values, dtype=float)
    if a.size == 0 or np.isnan(a).all():
        return math.nan
    return np.nanpercentile(a, q).item()
