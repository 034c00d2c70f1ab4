# MISTAKE: reads a into the second variable and b into the first, so everything is relative to b
# EXPECT: swapped
def compare_rows(table, a, b):
    new, old = table[a], table[b]
    return {
        "memory_saving": 1 - new["bytes_per_token"] / old["bytes_per_token"],
        "latency_overhead": new["ms_per_token"] / old["ms_per_token"] - 1,
        "quality_loss": new["perplexity"] / old["perplexity"] - 1,
    }
