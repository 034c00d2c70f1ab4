# MISTAKE: adds the token count to the dict
# EXPECT: exactly the keys
def request_metrics(arrival_s: float, token_times) -> dict:
    times = [float(t) for t in token_times]
    if not times:
        raise ValueError("no tokens")
    n = len(times)
    ttft = times[0] - arrival_s
    e2e = times[-1] - arrival_s
    tpot = (e2e - ttft) / (n - 1) if n > 1 else float("nan")
    itl = [b - a for a, b in zip(times, times[1:])]
    return {"ttft": ttft, "e2e": e2e, "tpot": tpot, "itl": itl, "n": n}
