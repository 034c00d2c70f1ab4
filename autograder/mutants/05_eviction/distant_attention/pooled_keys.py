# MISTAKE: divides the total lost weight by the number of (query, lost key) pairs instead of by the number of queries
# EXPECT: (query, lost key) pairs
def distant_attention(weights: torch.Tensor, num_kv_heads: int, num_sinks: int, window: int) -> torch.Tensor:
    B, H, T, _ = weights.shape
    G = H // num_kv_heads
    p = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    lost = (j >= num_sinks) & (j < p - window)  # (T, T)
    total = (weights.float() * lost).sum(dim=(2, 3))  # (B, H)
    per_head = total / lost.sum()
    return per_head.reshape(B, num_kv_heads, G).mean(dim=(0, 2))
