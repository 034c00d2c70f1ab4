# MISTAKE: tests `if not q_start` instead of `if q_start is None`, so q_start=0 is replaced by Tk - Tq
# EXPECT: treated like None
def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_start: int | None = None) -> torch.Tensor:
    """Attention of a block of new queries over all cached keys and values."""
    Tq, Tk, D = q.shape[-2], k.shape[-2], q.shape[-1]
    if not q_start:
        q_start = Tk - Tq
    scores = q @ k.transpose(-2, -1) / math.sqrt(D)  # [B, H, Tq, Tk]
    query_pos = torch.arange(q_start, q_start + Tq)[:, None]  # [Tq, 1] absolute positions
    key_pos = torch.arange(Tk)[None, :]  # [1, Tk]
    scores = scores.masked_fill(key_pos > query_pos, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ v  # [B, H, Tq, D]
