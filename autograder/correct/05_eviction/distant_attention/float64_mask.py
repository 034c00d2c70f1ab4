# VALID: vectorised: one (T, T) mask of lost keys (tril below the window times a not-a-sink column mask), the sums in float64, the group mean as a view, cast to float32 at the end
def distant_attention(weights: torch.Tensor, num_kv_heads: int, num_sinks: int, window: int) -> torch.Tensor:
    B, H, T, _ = weights.shape
    ones = torch.ones(T, T, dtype=torch.float64)
    before_window = torch.tril(ones, diagonal=-(window + 1))  # j <= p - window - 1
    not_sink = (torch.arange(T) >= num_sinks).to(torch.float64)  # (T,): keys from num_sinks on
    lost = (weights.double() * before_window * not_sink).sum(-1)  # (B, H, T)
    lost = lost[:, :, num_sinks + window + 1 :]
    per_group = lost.view(B, num_kv_heads, H // num_kv_heads, -1)
    return per_group.mean(dim=-1).mean(dim=-1).mean(dim=0).to(torch.float32)
