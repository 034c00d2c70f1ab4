# MISTAKE: an early exit for a plan with every head full returns the int 1
# EXPECT: 1.0, not 1
def pruned_fraction(full_heads: torch.Tensor, seq_len: int, num_sinks: int, window: int) -> float:
    if bool(full_heads.all()):
        return 1
    heads = full_heads.numel()
    full = int(full_heads.sum())
    streaming_tokens = min(seq_len, num_sinks + window)
    return (full * seq_len + (heads - full) * streaming_tokens) / (heads * seq_len)
