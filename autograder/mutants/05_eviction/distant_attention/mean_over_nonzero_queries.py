# MISTAKE: the mean is taken only over queries whose lost weight is not zero (a query that lost nothing is left out)
# EXPECT: whose lost weight is not 0
def distant_attention(weights, num_kv_heads, num_sinks, window):
    B, H, T, _ = weights.shape
    G = H // num_kv_heads
    first = num_sinks + window + 1
    lost = torch.zeros(B, H, T - first)
    for p in range(first, T):
        lost[:, :, p - first] = weights[:, :, p, num_sinks : p - window].float().sum(-1)
    lost = lost.reshape(B, num_kv_heads, G, T - first).transpose(0, 1).reshape(num_kv_heads, -1)
    nz = (lost != 0).sum(-1).clamp(min=1)
    return lost.sum(-1) / nz
