# MISTAKE: the time to first token is the first token's clock reading (arrival not subtracted)
# EXPECT: subtract the arrival
def request_metrics(arrival_s: float, token_times) -> dict:
    times = [float(t) for t in token_times]
    if not times:
        raise ValueError("no tokens")
    n = len(times)
    ttft = times[0]
    e2e = times[-1] - arrival_s
    tpot = (times[-1] - times[0]) / (n - 1) if n > 1 else float("nan")
    return {"ttft": ttft, "e2e": e2e, "tpot": tpot, "itl": [b - a for a, b in zip(times, times[1:])]}
