# MISTAKE: returns bytes_b / bytes_a (the fraction of memory b still needs) as the saving
# EXPECT: ratio b / a itself
def compare_rows(table, a, b):
    row_a, row_b = table[a], table[b]
    return {
        "memory_saving": row_b["bytes_per_token"] / row_a["bytes_per_token"],
        "latency_overhead": row_b["ms_per_token"] / row_a["ms_per_token"] - 1,
        "quality_loss": row_b["perplexity"] / row_a["perplexity"] - 1,
    }
