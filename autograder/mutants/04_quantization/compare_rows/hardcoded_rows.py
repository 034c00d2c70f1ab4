# MISTAKE: compares the rows named int8 and int4 whatever a and b are
# EXPECT: never fixed ones
def compare_rows(table, a, b):
    int8, int4 = table["int8"], table["int4"]
    return {
        "memory_saving": 1 - int4["bytes_per_token"] / int8["bytes_per_token"],
        "latency_overhead": int4["ms_per_token"] / int8["ms_per_token"] - 1,
        "quality_loss": int4["perplexity"] / int8["perplexity"] - 1,
    }
