# MISTAKE: lost weight computed as 1 - (weight on the sinks and the window), which assumes rows sum to exactly one (false in float16/bfloat16)
# EXPECT: do not sum to exactly one
def distant_attention(weights: torch.Tensor, num_kv_heads: int, num_sinks: int, window: int) -> torch.Tensor:
    B, H, T, _ = weights.shape
    G = H // num_kv_heads
    first = num_sinks + window + 1
    lost = torch.zeros(B, H, T - first)
    for p in range(first, T):
        row = weights[:, :, p].float()
        kept = row[..., :num_sinks].sum(-1) + row[..., p - window : p + 1].sum(-1)
        lost[:, :, p - first] = 1.0 - kept
    return lost.reshape(B, num_kv_heads, G, T - first).mean(dim=(0, 2, 3))
