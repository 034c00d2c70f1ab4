# MISTAKE: zeroes the kept keys of the weights in place (masked_fill_) before summing, destroying the caller's tensor
# EXPECT: in place
def distant_attention(weights: torch.Tensor, num_kv_heads: int, num_sinks: int, window: int) -> torch.Tensor:
    B, H, T, _ = weights.shape
    G = H // num_kv_heads
    p = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    kept = (j < num_sinks) | (j >= p - window)
    weights.masked_fill_(kept, 0.0)
    first = num_sinks + window + 1
    lost = weights.float().sum(-1)[:, :, first:]
    return lost.reshape(B, num_kv_heads, G, T - first).mean(dim=(0, 2, 3))
