# MISTAKE: a streaming head counted at num_sinks + window + 1 tokens
# EXPECT: num_sinks + window + 1
def pruned_fraction(full_heads, seq_len, num_sinks, window):
    heads = full_heads.numel()
    full = int(full_heads.sum())
    streaming_tokens = min(seq_len, num_sinks + window + 1)
    return (full * seq_len + (heads - full) * streaming_tokens) / (heads * seq_len)
