# MISTAKE: time per output token as the whole latency over the number of tokens
# EXPECT: tpot is e2e / n
def request_metrics(arrival_s: float, token_times) -> dict:
    times = [float(t) for t in token_times]
    if not times:
        raise ValueError("no tokens")
    n = len(times)
    e2e = times[-1] - arrival_s
    return {
        "ttft": times[0] - arrival_s,
        "e2e": e2e,
        "tpot": e2e / n if n > 1 else float("nan"),
        "itl": [b - a for a, b in zip(times, times[1:])],
    }
