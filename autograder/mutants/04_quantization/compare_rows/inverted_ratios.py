# MISTAKE: divides a's numbers by b's (the ratios upside down)
# EXPECT: upside down
def compare_rows(table, a, b):
    row_a, row_b = table[a], table[b]
    return {
        "memory_saving": 1 - row_a["bytes_per_token"] / row_b["bytes_per_token"],
        "latency_overhead": row_a["ms_per_token"] / row_b["ms_per_token"] - 1,
        "quality_loss": row_a["perplexity"] / row_b["perplexity"] - 1,
    }
