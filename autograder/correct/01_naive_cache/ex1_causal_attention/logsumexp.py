# VALID: explicit logsumexp softmax, additive -inf mask, computed in float32 (from an independent review)
def causal_attention(q, k, v, q_start=None):
    Tq, Tk, D = q.shape[-2], k.shape[-2], q.shape[-1]
    if q_start is None:
        q_start = Tk - Tq
    s = torch.matmul(q.float(), k.float().transpose(2, 3)) / math.sqrt(D)
    bias = torch.zeros(Tq, Tk)
    bias[torch.arange(Tk)[None, :] > torch.arange(q_start, q_start + Tq)[:, None]] = float("-inf")
    s = s + bias
    w = torch.exp(s - torch.logsumexp(s, dim=-1, keepdim=True))
    return torch.matmul(w, v.float()).to(q.dtype)
