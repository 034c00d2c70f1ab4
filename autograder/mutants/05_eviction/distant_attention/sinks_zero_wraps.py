# MISTAKE: float32 prefix sums read at index num_sinks - 1, which wraps to the last key when num_sinks = 0
# EXPECT: wraps around
def distant_attention(weights: torch.Tensor, num_kv_heads: int, num_sinks: int, window: int) -> torch.Tensor:
    B, H, T, _ = weights.shape
    G = H // num_kv_heads
    first = num_sinks + window + 1
    c = weights.float().cumsum(-1)  # c[..., j] = sum of keys 0 .. j
    p = torch.arange(first, T)
    lost = c[:, :, p, p - window - 1] - c[:, :, p, num_sinks - 1]
    return lost.reshape(B, num_kv_heads, G, T - first).mean(dim=(0, 2, 3))
