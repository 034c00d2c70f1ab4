# MISTAKE: groups query heads as h % num_kv_heads (interleaved) instead of contiguous blocks h // G
# EXPECT: h % num_kv_heads
def distant_attention(weights: torch.Tensor, num_kv_heads: int, num_sinks: int, window: int) -> torch.Tensor:
    B, H, T, _ = weights.shape
    G = H // num_kv_heads
    first = num_sinks + window + 1
    lost = torch.zeros(B, H, T - first)
    for p in range(first, T):
        lost[:, :, p - first] = weights[:, :, p, num_sinks : p - window].float().sum(-1)
    return lost.reshape(B, G, num_kv_heads, T - first).mean(dim=(0, 1, 3))
