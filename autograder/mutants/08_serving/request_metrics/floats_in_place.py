# MISTAKE: converts the caller's list to floats in place
# EXPECT: converted in place
def request_metrics(arrival_s: float, token_times) -> dict:
    if len(token_times) == 0:
        raise ValueError("no tokens")
    if isinstance(token_times, list):
        for i in range(len(token_times)):
            token_times[i] = float(token_times[i])
    times = [float(t) for t in token_times]
    n = len(times)
    ttft = times[0] - float(arrival_s)
    e2e = times[-1] - float(arrival_s)
    tpot = (e2e - ttft) / (n - 1) if n > 1 else float("nan")
    return {"ttft": ttft, "e2e": e2e, "tpot": tpot, "itl": [b - a for a, b in zip(times, times[1:])]}
