# MISTAKE: builds the result in the weights' dtype, so float16 weights give a float16 score
# EXPECT: must return float32
def distant_attention(weights: torch.Tensor, num_kv_heads: int, num_sinks: int, window: int) -> torch.Tensor:
    B, H, T, _ = weights.shape
    G = H // num_kv_heads
    first = num_sinks + window + 1
    lost = torch.zeros(B, H, T - first, dtype=weights.dtype)
    for p in range(first, T):
        lost[:, :, p - first] = weights[:, :, p, num_sinks : p - window].sum(-1)
    return lost.reshape(B, num_kv_heads, G, T - first).mean(dim=(0, 2, 3))
