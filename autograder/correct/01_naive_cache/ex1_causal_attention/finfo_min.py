# VALID: masked scores filled with finfo(dtype).min (fits every dtype), float32 softmax (from an independent review)
def causal_attention(q, k, v, q_start=None):
    Tq, Tk, D = q.shape[-2], k.shape[-2], q.shape[-1]
    if q_start is None:
        q_start = Tk - Tq
    s = (q.float() @ k.float().mT) * D ** -0.5
    mask = torch.arange(Tk)[None, :] > torch.arange(q_start, q_start + Tq)[:, None]
    s = s.masked_fill(mask, torch.finfo(s.dtype).min)
    return (s.softmax(-1) @ v.float()).to(q.dtype)
