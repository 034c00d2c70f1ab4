# MISTAKE: returns the gaps as a NumPy array
# EXPECT: must be a list, got a NumPy array
import numpy as np


def request_metrics(arrival_s: float, token_times) -> dict:
    t = np.array(token_times, dtype=float)
    if t.size == 0:
        raise ValueError("no tokens")
    gaps = np.diff(t)
    tpot = float(gaps.mean()) if gaps.size else float("nan")
    return {"ttft": float(t[0] - arrival_s), "e2e": float(t[-1] - arrival_s), "tpot": tpot, "itl": gaps}
