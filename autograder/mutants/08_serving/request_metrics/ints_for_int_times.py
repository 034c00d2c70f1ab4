# MISTAKE: no conversion to float: integer times give int latencies
# EXPECT: must be a Python float
def request_metrics(arrival_s: float, token_times) -> dict:
    if len(token_times) == 0:
        raise ValueError("no tokens")
    n = len(token_times)
    ttft = token_times[0] - arrival_s
    e2e = token_times[-1] - arrival_s
    tpot = (e2e - ttft) / (n - 1) if n > 1 else float("nan")
    itl = [token_times[i + 1] - token_times[i] for i in range(n - 1)]
    return {"ttft": ttft, "e2e": e2e, "tpot": tpot, "itl": itl}
