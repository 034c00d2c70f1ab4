# VALID: computes the gaps first and takes tpot as their mean (statistics.fmean), NaN when there are none
import statistics


def request_metrics(arrival_s: float, token_times) -> dict:
    if len(token_times) == 0:
        raise ValueError("a request with no output token has no latency")
    first, last = float(token_times[0]), float(token_times[-1])
    gaps = [float(token_times[i]) - float(token_times[i - 1]) for i in range(1, len(token_times))]
    return {
        "itl": gaps,
        "tpot": statistics.fmean(gaps) if gaps else float("nan"),
        "e2e": last - arrival_s,
        "ttft": first - arrival_s,
    }
