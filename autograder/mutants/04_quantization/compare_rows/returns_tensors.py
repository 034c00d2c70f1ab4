# MISTAKE: computes with torch tensors and returns one-element tensors
# EXPECT: Python float
import torch


def compare_rows(table, a, b):
    cols = ["bytes_per_token", "ms_per_token", "perplexity"]
    va = torch.tensor([float(table[a][c]) for c in cols], dtype=torch.float64)
    vb = torch.tensor([float(table[b][c]) for c in cols], dtype=torch.float64)
    r = vb / va
    return {"memory_saving": 1 - r[0], "latency_overhead": r[1] - 1, "quality_loss": r[2] - 1}
