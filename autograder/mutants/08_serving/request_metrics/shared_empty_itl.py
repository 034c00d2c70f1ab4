# MISTAKE: every one-token request gets the same module-level empty list as its gaps
# EXPECT: same empty itl list object
NO_GAPS = []


def request_metrics(arrival_s: float, token_times) -> dict:
    times = [float(t) for t in token_times]
    if not times:
        raise ValueError("no tokens")
    ttft = times[0] - arrival_s
    if len(times) == 1:
        return {"ttft": ttft, "e2e": ttft, "tpot": float("nan"), "itl": NO_GAPS}
    e2e = times[-1] - arrival_s
    tpot = (e2e - ttft) / (len(times) - 1)
    return {"ttft": ttft, "e2e": e2e, "tpot": tpot, "itl": [b - a for a, b in zip(times, times[1:])]}
