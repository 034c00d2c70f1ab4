# MISTAKE: memoises the mask in a dict keyed by (Tq, Tk), so a later call with another q_start reuses a wrong mask
# EXPECT: memoised by shape
_MASKS: dict = {}


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
    if q_start is None:
        q_start = Tk - Tq
    scores = q @ k.transpose(-2, -1) / math.sqrt(D)  # [B, H, Tq, Tk]
    if (Tq, Tk) not in _MASKS:  # build each mask once
        query_pos = torch.arange(q_start, q_start + Tq)[:, None]  # [Tq, 1] absolute positions
        _MASKS[Tq, Tk] = torch.arange(Tk)[None, :] > query_pos
    scores = scores.masked_fill(_MASKS[Tq, Tk], float("-inf"))  # no peeking at the future
    weights = torch.softmax(scores, dim=-1)  # each row sums to 1 over the keys
    return weights @ v  # [B, H, Tq, D]
