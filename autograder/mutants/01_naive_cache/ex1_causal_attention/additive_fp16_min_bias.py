# MISTAKE: an additive mask of -65504 (float16's minimum): with large scores in float32 the masked keys leak through (found by an independent review)
# EXPECT: masked keys leak
def causal_attention(q, k, v, q_start=None):
    Tq, Tk, D = q.shape[-2], k.shape[-2], q.shape[-1]
    if q_start is None:
        q_start = Tk - Tq
    scores = q @ k.transpose(-2, -1) / math.sqrt(D)
    qp = torch.arange(q_start, q_start + Tq)[:, None]
    kp = torch.arange(Tk)[None, :]
    bias = (kp > qp).to(scores.dtype) * -65504.0
    return torch.softmax(scores + bias, dim=-1) @ v
