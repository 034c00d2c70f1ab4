# MISTAKE: adds up the G query heads of a group instead of averaging them
# EXPECT: summed the G query heads
def distant_attention(weights: torch.Tensor, num_kv_heads: int, num_sinks: int, window: int) -> torch.Tensor:
    B, H, T, _ = weights.shape
    G = H // num_kv_heads
    first = num_sinks + window + 1
    lost = torch.zeros(B, H, T - first)
    for p in range(first, T):
        lost[:, :, p - first] = weights[:, :, p, num_sinks : p - window].float().sum(-1)
    per_head = lost.mean(dim=(0, 2))  # (H,)
    return per_head.view(num_kv_heads, G).sum(-1)
