# MISTAKE: returns percentages (75.0) instead of fractions (0.75)
# EXPECT: percentage
def compare_rows(table, a, b):
    row_a, row_b = table[a], table[b]
    return {
        "memory_saving": 100 * (1 - row_b["bytes_per_token"] / row_a["bytes_per_token"]),
        "latency_overhead": 100 * (row_b["ms_per_token"] / row_a["ms_per_token"] - 1),
        "quality_loss": 100 * (row_b["perplexity"] / row_a["perplexity"] - 1),
    }
