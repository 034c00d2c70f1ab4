# VALID: einsum over a [B, KV, G, T, D] view, computed in float64 and cast back (from an independent review)

def grouped_attention_step(q, k_new, v_new, past=None):
    k_all = k_new if past is None else torch.cat((past[0], k_new), dim=2)
    v_all = v_new if past is None else torch.cat((past[1], v_new), dim=2)
    B, H, T, D = q.shape
    KV, N = k_all.shape[1], k_all.shape[2]
    qg = q.double().view(B, KV, H // KV, T, D)
    s = torch.einsum("bkgtd,bknd->bkgtn", qg, k_all.double()) / D ** 0.5
    s = s.masked_fill(torch.arange(N)[None, :] > torch.arange(N - T, N)[:, None], float("-inf"))
    out = torch.einsum("bkgtn,bknd->bkgtd", s.softmax(-1), v_all.double())
    return out.reshape(B, H, T, D).to(q.dtype), (k_all, v_all)
