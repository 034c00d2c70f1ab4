# MISTAKE: the window slice ends one key late (j <= p - window), so key p - window counts as lost
# EXPECT: window is off by one
def distant_attention(weights: torch.Tensor, num_kv_heads: int, num_sinks: int, window: int) -> torch.Tensor:
    B, H, T, _ = weights.shape
    G = H // num_kv_heads
    first = num_sinks + window + 1
    lost = torch.zeros(B, H, T - first)
    for p in range(first, T):
        lost[:, :, p - first] = weights[:, :, p, num_sinks : p - window + 1].float().sum(-1)
    return lost.reshape(B, num_kv_heads, G, T - first).mean(dim=(0, 2, 3))
