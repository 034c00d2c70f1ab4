# MISTAKE: computes the latency overhead as 1 - ms_b / ms_a, the speed-up, with the opposite sign
# EXPECT: sign is flipped
def compare_rows(table, a, b):
    row_a, row_b = table[a], table[b]
    return {
        "memory_saving": 1 - row_b["bytes_per_token"] / row_a["bytes_per_token"],
        "latency_overhead": 1 - row_b["ms_per_token"] / row_a["ms_per_token"],
        "quality_loss": row_b["perplexity"] / row_a["perplexity"] - 1,
    }
