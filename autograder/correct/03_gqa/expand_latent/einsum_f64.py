# VALID: einsum over per-head weight views, float64 then cast back (from an independent review)
def expand_latent(c_kv, w_uk, w_uv, num_heads):

    H = num_heads
    D = w_uk.shape[0] // H
    wk = w_uk.double().view(H, D, -1)
    wv = w_uv.double().view(H, D, -1)
    k = torch.einsum("btc,hdc->bhtd", c_kv.double(), wk).to(c_kv.dtype)
    v = torch.einsum("btc,hdc->bhtd", c_kv.double(), wv).to(c_kv.dtype)
    return k, v
