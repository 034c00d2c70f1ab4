# MISTAKE: counts the streaming heads with an in-place logical_not_, flipping the caller's plan
# EXPECT: modified its input full_heads
def pruned_fraction(full_heads: torch.Tensor, seq_len: int, num_sinks: int, window: int) -> float:
    heads = full_heads.numel()
    full = int(full_heads.sum())
    streaming = int(full_heads.logical_not_().sum())
    streaming_tokens = min(seq_len, num_sinks + window)
    return (full * seq_len + streaming * streaming_tokens) / (heads * seq_len)
