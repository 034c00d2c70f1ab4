# MISTAKE: slices the mask from a tril buffer built once for 64 positions (nanoGPT style), too short for longer sequences
# EXPECT: sized for a maximum length
_CAUSAL = torch.tril(torch.ones(64, 64))  # block_size = 64


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
    mask = _CAUSAL[q_start : q_start + Tq, :Tk] == 0  # like nanoGPT's registered "bias" buffer
    scores = scores.masked_fill(mask, float("-inf"))  # no peeking at the future
    weights = torch.softmax(scores, dim=-1)  # each row sums to 1 over the keys
    return weights @ v  # [B, H, Tq, D]
