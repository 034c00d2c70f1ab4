# MISTAKE: no check for an empty request: token_times[0] raises IndexError
# EXPECT: raise ValueError
def request_metrics(arrival_s: float, token_times) -> dict:
    times = [float(t) for t in token_times]
    ttft = times[0] - arrival_s
    e2e = times[-1] - arrival_s
    n = len(times)
    tpot = (e2e - ttft) / (n - 1) if n > 1 else float("nan")
    return {"ttft": ttft, "e2e": e2e, "tpot": tpot, "itl": [b - a for a, b in zip(times, times[1:])]}
