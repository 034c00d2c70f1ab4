# VALID: NumPy vectors of the three columns, (a - b) / a for the saving, numpy.float64 results (a float subclass)
import numpy as np

COLUMNS = ("bytes_per_token", "ms_per_token", "perplexity")


def compare_rows(table, a, b):
    va = np.array([table[a][c] for c in COLUMNS], dtype=np.float64)
    vb = np.array([table[b][c] for c in COLUMNS], dtype=np.float64)
    change = (vb - va) / va  # relative change of each column, b against a
    return {"memory_saving": -change[0], "latency_overhead": change[1], "quality_loss": change[2]}
