# MISTAKE: averages over queries and heads but keeps the batch axis: returns [B, num_kv_heads]
# EXPECT: average over the B rows
def distant_attention(weights: torch.Tensor, num_kv_heads: int, num_sinks: int, window: int) -> torch.Tensor:
    B, H, T, _ = weights.shape
    G = H // num_kv_heads
    first = num_sinks + window + 1
    lost = torch.zeros(B, H, T - first)
    for p in range(first, T):
        lost[:, :, p - first] = weights[:, :, p, num_sinks : p - window].float().sum(-1)
    return lost.reshape(B, num_kv_heads, G, T - first).mean(dim=(2, 3))
