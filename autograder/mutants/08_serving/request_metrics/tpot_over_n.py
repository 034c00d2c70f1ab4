# MISTAKE: divides the time after the first token by n instead of n - 1
# EXPECT: tpot divides by n - 1, not by n
def request_metrics(arrival_s: float, token_times) -> dict:
    times = [float(t) for t in token_times]
    if not times:
        raise ValueError("no tokens")
    n = len(times)
    ttft = times[0] - arrival_s
    e2e = times[-1] - arrival_s
    tpot = (e2e - ttft) / n if n > 1 else float("nan")
    itl = [times[i + 1] - times[i] for i in range(n - 1)]
    return {"ttft": ttft, "e2e": e2e, "tpot": tpot, "itl": itl}
