# VALID: float32 tensor arithmetic (torch.where over the plan, the mean of each head's kept share), then .item()
def pruned_fraction(full_heads: torch.Tensor, seq_len: int, num_sinks: int, window: int) -> float:
    streaming_share = min(seq_len, num_sinks + window) / seq_len
    per_head = torch.where(full_heads, torch.tensor(1.0), torch.tensor(streaming_share))
    return per_head.mean().item()
