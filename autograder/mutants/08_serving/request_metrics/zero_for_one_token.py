# MISTAKE: returns 0.0 as the time per token of a one-token request
# EXPECT: never 0
def request_metrics(arrival_s: float, token_times) -> dict:
    times = [float(t) for t in token_times]
    if not times:
        raise ValueError("no tokens")
    n = len(times)
    ttft = times[0] - arrival_s
    e2e = times[-1] - arrival_s
    tpot = (e2e - ttft) / (n - 1) if n > 1 else 0.0
    return {"ttft": ttft, "e2e": e2e, "tpot": tpot, "itl": [b - a for a, b in zip(times, times[1:])]}
