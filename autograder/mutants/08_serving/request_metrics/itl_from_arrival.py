# MISTAKE: the inter-token latencies start with the gap from the arrival (n gaps instead of n - 1)
# EXPECT: you included the gap from the arrival
def request_metrics(arrival_s: float, token_times) -> dict:
    times = [float(t) for t in token_times]
    if not times:
        raise ValueError("no tokens")
    n = len(times)
    ttft = times[0] - arrival_s
    e2e = times[-1] - arrival_s
    tpot = (e2e - ttft) / (n - 1) if n > 1 else float("nan")
    stamps = [float(arrival_s)] + times
    itl = [stamps[i + 1] - stamps[i] for i in range(n)]
    return {"ttft": ttft, "e2e": e2e, "tpot": tpot, "itl": itl}
