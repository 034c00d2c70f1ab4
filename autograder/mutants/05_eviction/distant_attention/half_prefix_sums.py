# MISTAKE: prefix sums (cumsum) in the weights' own dtype, cast to float32 only at the end: float16 loses digits
# EXPECT: lost digits
def distant_attention(weights: torch.Tensor, num_kv_heads: int, num_sinks: int, window: int) -> torch.Tensor:
    B, H, T, _ = weights.shape
    G = H // num_kv_heads
    first = num_sinks + window + 1
    c = torch.cat([torch.zeros_like(weights[..., :1]), weights.cumsum(-1)], dim=-1)  # c[..., j] = sum of keys < j
    p = torch.arange(first, T)
    lost = c[:, :, p, p - window] - c[:, :, p, num_sinks]  # keys num_sinks .. p - window - 1
    return lost.float().reshape(B, num_kv_heads, G, T - first).mean(dim=(0, 2, 3))
