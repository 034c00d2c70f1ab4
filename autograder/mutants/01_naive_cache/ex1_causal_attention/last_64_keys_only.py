# MISTAKE: a sliding-window shortcut: with more than 64 keys only the last 64 are attended (found by an independent review)
# EXPECT: limited to a fixed length
def causal_attention(q, k, v, q_start=None):
    Tq, Tk, D = q.shape[-2], k.shape[-2], q.shape[-1]
    if q_start is None:
        q_start = Tk - Tq
    off = max(0, Tk - 64)
    k, v = k[..., off:, :], v[..., off:, :]
    scores = q @ k.transpose(-2, -1) / math.sqrt(D)
    qp = torch.arange(q_start, q_start + Tq)[:, None]
    kp = torch.arange(off, Tk)[None, :]
    scores = scores.masked_fill(kp > qp, float("-inf"))
    return torch.nan_to_num(torch.softmax(scores, dim=-1)) @ v
