# MISTAKE: averages over all T queries, including the early ones that lose nothing (p <= num_sinks + window)
# EXPECT: all T queries
def distant_attention(weights: torch.Tensor, num_kv_heads: int, num_sinks: int, window: int) -> torch.Tensor:
    B, H, T, _ = weights.shape
    G = H // num_kv_heads
    lost = torch.zeros(B, H, T)
    for p in range(T):
        if p - window > num_sinks:
            lost[:, :, p] = weights[:, :, p, num_sinks : p - window].float().sum(-1)
    return lost.reshape(B, num_kv_heads, G, T).mean(dim=(0, 2, 3))
