# MISTAKE: shifts the times to the arrival in place; np.asarray returns the caller's float array itself
# EXPECT: changed the token_times it was given
import numpy as np


def request_metrics(arrival_s: float, token_times) -> dict:
    t = np.asarray(token_times, dtype=float)
    if t.size == 0:
        raise ValueError("no tokens")
    t -= arrival_s  # times since the arrival
    n = t.size
    tpot = float((t[-1] - t[0]) / (n - 1)) if n > 1 else float("nan")
    return {"ttft": float(t[0]), "e2e": float(t[-1]), "tpot": tpot, "itl": np.diff(t).tolist()}
