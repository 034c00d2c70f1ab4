# VALID: NumPy throughout (np.diff for the gaps, NumPy float64 scalars for the numbers, math.nan)
import math

import numpy as np


def request_metrics(arrival_s: float, token_times) -> dict:
    t = np.array(token_times, dtype=np.float64)  # a copy: the caller's array stays as it was
    if t.size == 0:
        raise ValueError("token_times is empty")
    since_arrival = t - np.float64(arrival_s)
    n = t.size
    return {
        "ttft": since_arrival[0],
        "e2e": since_arrival[-1],
        "tpot": (t[-1] - t[0]) / (n - 1) if n > 1 else math.nan,
        "itl": np.diff(t).tolist(),
    }
