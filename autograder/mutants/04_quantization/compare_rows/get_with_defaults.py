# MISTAKE: looks rows up with table.get(name, {}) and columns with .get(column, 1.0), so a missing row gives numbers instead of KeyError
# EXPECT: must raise KeyError
def compare_rows(table, a, b):
    row_a, row_b = table.get(a, {}), table.get(b, {})
    return {
        "memory_saving": 1 - row_b.get("bytes_per_token", 1.0) / row_a.get("bytes_per_token", 1.0),
        "latency_overhead": row_b.get("ms_per_token", 1.0) / row_a.get("ms_per_token", 1.0) - 1,
        "quality_loss": row_b.get("perplexity", 1.0) / row_a.get("perplexity", 1.0) - 1,
    }
