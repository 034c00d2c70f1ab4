# MISTAKE: reads True as a streaming head
# EXPECT: True read as a streaming head
def pruned_fraction(full_heads: torch.Tensor, seq_len: int, num_sinks: int, window: int) -> float:
    heads = full_heads.numel()
    streaming = int(full_heads.sum())
    streaming_tokens = min(seq_len, num_sinks + window)
    return ((heads - streaming) * seq_len + streaming * streaming_tokens) / (heads * seq_len)
