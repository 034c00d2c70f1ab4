# MISTAKE: normalizes row b by row a in place (table[b][col] /= table[a][col]), changing the caller's table
# EXPECT: modified the table
def compare_rows(table, a, b):
    for column in ("bytes_per_token", "ms_per_token", "perplexity"):
        table[b][column] = table[b][column] / table[a][column]  # b relative to a
    relative = table[b]
    return {
        "memory_saving": 1 - relative["bytes_per_token"],
        "latency_overhead": relative["ms_per_token"] - 1,
        "quality_loss": relative["perplexity"] - 1,
    }
