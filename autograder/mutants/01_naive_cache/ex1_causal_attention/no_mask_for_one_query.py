# MISTAKE: skips the mask when Tq == 1 ("decode sees everything"), wrong for a single query with q_start < Tk - 1 (found by an independent review)
# EXPECT: instead of the q_start argument
def causal_attention(q, k, v, q_start=None):
    Tq, Tk, D = q.shape[-2], k.shape[-2], q.shape[-1]
    if q_start is None:
        q_start = Tk - Tq
    scores = q @ k.transpose(-2, -1) / math.sqrt(D)
    if Tq > 1:
        qp = torch.arange(q_start, q_start + Tq)[:, None]
        kp = torch.arange(Tk)[None, :]
        scores = scores.masked_fill(kp > qp, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v
