# MISTAKE: a streaming head keeps only its window: the sinks are forgotten
# EXPECT: the sinks are forgotten
def pruned_fraction(full_heads: torch.Tensor, seq_len: int, num_sinks: int, window: int) -> float:
    heads = full_heads.numel()
    full = int(full_heads.sum())
    streaming_tokens = min(seq_len, window)
    return (full * seq_len + (heads - full) * streaming_tokens) / (heads * seq_len)
