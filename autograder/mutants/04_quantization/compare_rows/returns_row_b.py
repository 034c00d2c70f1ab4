# MISTAKE: writes the three results into table[b] and returns that row
# EXPECT: modified the table
def compare_rows(table, a, b):
    row_a, row_b = table[a], table[b]
    row_b["memory_saving"] = 1 - row_b["bytes_per_token"] / row_a["bytes_per_token"]
    row_b["latency_overhead"] = row_b["ms_per_token"] / row_a["ms_per_token"] - 1
    row_b["quality_loss"] = row_b["perplexity"] / row_a["perplexity"] - 1
    return row_b
