# MISTAKE: returns the memory saved (1 - fraction) instead of the fraction kept
# EXPECT: the memory saved (1 - fraction)
def pruned_fraction(full_heads: torch.Tensor, seq_len: int, num_sinks: int, window: int) -> float:
    heads = full_heads.numel()
    full = int(full_heads.sum())
    streaming_tokens = min(seq_len, num_sinks + window)
    dense = heads * seq_len
    saved = (heads - full) * (seq_len - streaming_tokens)
    return saved / dense
