# VALID: exact Fraction arithmetic from a spec table of (key, column, sign), an explicit membership test raising KeyError, float() at the end
from fractions import Fraction

SPEC = (("memory_saving", "bytes_per_token", -1), ("latency_overhead", "ms_per_token", 1), ("quality_loss", "perplexity", 1))


def compare_rows(table, a, b):
    missing = [name for name in (a, b) if name not in table]
    if missing:
        raise KeyError(f"no such row: {missing}")
    out = {}
    for key, column, sign in SPEC:
        before, after = Fraction(table[a][column]), Fraction(table[b][column])
        out[key] = float(sign * (after - before) / before)
    return out
