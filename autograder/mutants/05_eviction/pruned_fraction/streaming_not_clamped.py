# MISTAKE: counts every streaming head at num_sinks + window tokens even when it has seen fewer
# EXPECT: min(seq_len, num_sinks + window)
def pruned_fraction(full_heads: torch.Tensor, seq_len: int, num_sinks: int, window: int) -> float:
    heads = full_heads.numel()
    full = int(full_heads.sum())
    streaming_tokens = num_sinks + window
    return (full * seq_len + (heads - full) * streaming_tokens) / (heads * seq_len)
