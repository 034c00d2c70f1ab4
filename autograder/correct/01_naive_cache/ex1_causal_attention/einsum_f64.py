# VALID: einsum in float64, cast back to q's dtype (from an independent review)
def causal_attention(q, k, v, q_start=None):
    Tq, Tk, D = q.shape[-2], k.shape[-2], q.shape[-1]
    if q_start is None:
        q_start = Tk - Tq
    s = torch.einsum("bhqd,bhkd->bhqk", q.double(), k.double()) / math.sqrt(D)
    mask = torch.arange(Tk)[None, :] > torch.arange(q_start, q_start + Tq)[:, None]
    w = s.masked_fill(mask, float("-inf")).softmax(-1)
    return torch.einsum("bhqk,bhkd->bhqd", w, v.double()).to(q.dtype)
