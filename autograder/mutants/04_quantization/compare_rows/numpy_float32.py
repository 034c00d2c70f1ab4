# MISTAKE: computes with float32 NumPy arrays and returns numpy.float32 numbers (not Python floats, and 7 digits)
# EXPECT: must be a Python float
import numpy as np


def compare_rows(table, a, b):
    cols = ["bytes_per_token", "ms_per_token", "perplexity"]
    ra = np.array([table[a][c] for c in cols], dtype=np.float32)
    rb = np.array([table[b][c] for c in cols], dtype=np.float32)
    ratio = rb / ra
    return {"memory_saving": 1 - ratio[0], "latency_overhead": ratio[1] - 1, "quality_loss": ratio[2] - 1}
