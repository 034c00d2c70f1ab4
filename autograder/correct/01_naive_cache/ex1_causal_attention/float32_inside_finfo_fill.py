# VALID: computes in float32 inside and fills with finfo(float32).min, casting back to the input dtype
def causal_attention(q, k, v, q_start=None):
    Tq, Tk, D = q.shape[-2], k.shape[-2], q.shape[-1]
    start = Tk - Tq if q_start is None else q_start
    scores = q.float() @ k.float().transpose(-2, -1) / math.sqrt(D)
    mask = torch.ones(Tq, Tk, dtype=torch.bool).tril(diagonal=start)
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return (scores.softmax(dim=-1) @ v.float()).to(q.dtype)
