# MISTAKE: computes in float64 "for accuracy" and returns float64 for float32 inputs
# EXPECT: must keep the dtype
def causal_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_start: int | None = None
) -> torch.Tensor:
    """Attention of a block of new queries over all cached keys and values.

    q: [B, H, Tq, D] queries of the new tokens; k, v: [B, H, Tk, D] keys and values of every cached
    token (the new ones included). Query i sits at absolute position q_start + i and may attend to
    keys j <= q_start + i. When q_start is None the queries are the last Tq positions: q_start = Tk - Tq.
    Returns [B, H, Tq, D]: softmax(q k^T / sqrt(D), masked) @ v, softmax over the key axis.
    """
    Tq, Tk, D = q.shape[-2], k.shape[-2], q.shape[-1]
    q, k, v = q.double(), k.double(), v.double()  # more accurate
    if q_start is None:
        q_start = Tk - Tq
    scores = q @ k.transpose(-2, -1) / math.sqrt(D)  # [B, H, Tq, Tk]
    query_pos = torch.arange(q_start, q_start + Tq)[:, None]  # [Tq, 1] absolute positions
    key_pos = torch.arange(Tk)[None, :]  # [1, Tk]
    scores = scores.masked_fill(key_pos > query_pos, float("-inf"))  # no peeking at the future
    weights = torch.softmax(scores, dim=-1)  # each row sums to 1 over the keys
    return weights @ v  # [B, H, Tq, D]
