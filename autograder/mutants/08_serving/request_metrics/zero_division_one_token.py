# MISTAKE: no special case for one token: the division by n - 1 = 0 raises
# EXPECT: one token: tpot is float("nan")
def request_metrics(arrival_s: float, token_times) -> dict:
    times = [float(t) for t in token_times]
    if not times:
        raise ValueError("no tokens")
    ttft = times[0] - arrival_s
    e2e = times[-1] - arrival_s
    tpot = (e2e - ttft) / (len(times) - 1)
    return {"ttft": ttft, "e2e": e2e, "tpot": tpot, "itl": [b - a for a, b in zip(times, times[1:])]}
