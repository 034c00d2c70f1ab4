# MISTAKE: scores only the first sequence of the batch (weights[0]), as if B were always 1
# EXPECT: only the first batch row
def distant_attention(weights: torch.Tensor, num_kv_heads: int, num_sinks: int, window: int) -> torch.Tensor:
    w = weights[0]  # (H, T, T)
    H, T, _ = w.shape
    G = H // num_kv_heads
    first = num_sinks + window + 1
    lost = torch.zeros(H, T - first)
    for p in range(first, T):
        lost[:, p - first] = w[:, p, num_sinks : p - window].float().sum(-1)
    return lost.reshape(num_kv_heads, G, T - first).mean(dim=(1, 2))
