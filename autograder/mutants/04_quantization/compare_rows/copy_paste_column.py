# MISTAKE: copies the latency line for the quality loss and forgets to change the column
# EXPECT: computed from the 'ms_per_token' column
def compare_rows(table, a, b):
    row_a, row_b = table[a], table[b]
    return {
        "memory_saving": 1 - row_b["bytes_per_token"] / row_a["bytes_per_token"],
        "latency_overhead": row_b["ms_per_token"] / row_a["ms_per_token"] - 1,
        "quality_loss": row_b["ms_per_token"] / row_a["ms_per_token"] - 1,
    }
