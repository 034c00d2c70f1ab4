# MISTAKE: counts the full heads with full_heads.sum() and never converts, so the answer is a 0-dim tensor
# EXPECT: must return a Python float, got a tensor
def pruned_fraction(full_heads: torch.Tensor, seq_len: int, num_sinks: int, window: int) -> float:
    heads = full_heads.numel()
    full = full_heads.sum()
    streaming_tokens = min(seq_len, num_sinks + window)
    return (full * seq_len + (heads - full) * streaming_tokens) / (heads * seq_len)
