# VALID: pure Python, NaN dropped with v == v, the two neighbours weighted (1 - f) * v[lo] + f * v[hi]
def percentile(values, q: float) -> float:
    if q < 0 or q > 100:
        raise ValueError("q out of range")
    data = sorted(float(v) for v in values if v == v)
    if len(data) == 0:
        return float("nan")
    rank = (len(data) - 1) * q / 100.0
    lo = int(rank)
    frac = rank - lo
    if frac == 0:
        return data[lo]
    return (1.0 - frac) * data[lo] + frac * data[lo + 1]
