# VALID: exact arithmetic with fractions.Fraction, converted to float at the end
from fractions import Fraction


def request_metrics(arrival_s: float, token_times) -> dict:
    exact = [Fraction(float(t)) for t in token_times]
    if not exact:
        raise ValueError("no output token: no latency")
    start = Fraction(float(arrival_s))
    n = len(exact)
    ttft = exact[0] - start
    e2e = exact[-1] - start
    return {
        "ttft": float(ttft),
        "e2e": float(e2e),
        "tpot": float((e2e - ttft) / (n - 1)) if n > 1 else float("nan"),
        "itl": [float(b - a) for a, b in zip(exact, exact[1:])],
    }
