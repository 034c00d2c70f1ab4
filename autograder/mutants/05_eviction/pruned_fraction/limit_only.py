# MISTAKE: returns the share of full heads, the limit for long sequences
# EXPECT: the limit F / N
def pruned_fraction(full_heads: torch.Tensor, seq_len: int, num_sinks: int, window: int) -> float:
    return int(full_heads.sum()) / full_heads.numel()
