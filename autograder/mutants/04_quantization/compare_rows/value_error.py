# MISTAKE: raises ValueError for a missing row, where the spec promises KeyError
# EXPECT: must raise KeyError
def compare_rows(table, a, b):
    for name in (a, b):
        if name not in table:
            raise ValueError(f"unknown cache {name}")
    row_a, row_b = table[a], table[b]
    return {
        "memory_saving": 1 - row_b["bytes_per_token"] / row_a["bytes_per_token"],
        "latency_overhead": row_b["ms_per_token"] / row_a["ms_per_token"] - 1,
        "quality_loss": row_b["perplexity"] / row_a["perplexity"] - 1,
    }
