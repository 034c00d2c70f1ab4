# MISTAKE: one module-level list holds the gaps, cleared and refilled by every call
# EXPECT: changed after a later call
_gaps = []


def request_metrics(arrival_s: float, token_times) -> dict:
    times = [float(t) for t in token_times]
    if not times:
        raise ValueError("no tokens")
    n = len(times)
    ttft = times[0] - arrival_s
    e2e = times[-1] - arrival_s
    tpot = (e2e - ttft) / (n - 1) if n > 1 else float("nan")
    _gaps.clear()
    for a, b in zip(times, times[1:]):
        _gaps.append(b - a)
    return {"ttft": ttft, "e2e": e2e, "tpot": tpot, "itl": _gaps}
