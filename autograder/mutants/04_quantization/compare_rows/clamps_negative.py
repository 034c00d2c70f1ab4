# MISTAKE: reports a faster or better b as 0 overhead and 0 loss (max(0, ...)), hiding the gain
# EXPECT: do not clamp it at 0
def compare_rows(table, a, b):
    row_a, row_b = table[a], table[b]
    return {
        "memory_saving": 1 - row_b["bytes_per_token"] / row_a["bytes_per_token"],
        "latency_overhead": max(0.0, row_b["ms_per_token"] / row_a["ms_per_token"] - 1),
        "quality_loss": max(0.0, row_b["perplexity"] / row_a["perplexity"] - 1),
    }
