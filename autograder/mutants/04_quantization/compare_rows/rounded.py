# MISTAKE: rounds each number to 2 decimals before returning it
# EXPECT: rounded
def compare_rows(table, a, b):
    row_a, row_b = table[a], table[b]
    return {
        "memory_saving": round(1 - row_b["bytes_per_token"] / row_a["bytes_per_token"], 2),
        "latency_overhead": round(row_b["ms_per_token"] / row_a["ms_per_token"] - 1, 2),
        "quality_loss": round(row_b["perplexity"] / row_a["perplexity"] - 1, 2),
    }
