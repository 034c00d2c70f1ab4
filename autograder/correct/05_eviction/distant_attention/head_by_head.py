# VALID: loops over query heads, adding each head's mean lost weight (a float32 tensor per query) into its KV head's total, then divides by G
def distant_attention(weights: torch.Tensor, num_kv_heads: int, num_sinks: int, window: int) -> torch.Tensor:
    B, H, T, _ = weights.shape
    G = H // num_kv_heads
    totals = torch.zeros(num_kv_heads, dtype=torch.float32)
    for h in range(H):
        per_query = []
        for p in range(num_sinks + window + 1, T):
            keys = weights[:, h, p].to(torch.float32)  # (B, T): query p's weights, this head, every row
            per_query.append(keys[:, num_sinks : p - window].sum(dim=-1))  # (B,)
        totals[h // G] = totals[h // G] + torch.stack(per_query).mean()
    return totals / G
