# MISTAKE: takes num_kv_heads (one layer's heads) as the number of heads, with the full heads of all layers
# EXPECT: one layer's heads taken as all the heads
def pruned_fraction(full_heads: torch.Tensor, seq_len: int, num_sinks: int, window: int) -> float:
    num_kv_heads = full_heads.shape[1]
    full = int(full_heads.sum())
    streaming_tokens = min(seq_len, num_sinks + window)
    return (full * seq_len + (num_kv_heads - full) * streaming_tokens) / (num_kv_heads * seq_len)
