# VALID: one einsum per projection
def expand_latent(c_kv, w_uk, w_uv, num_heads):
    d = w_uk.shape[0] // num_heads
    split = lambda w: torch.einsum('btc,hdc->bhtd', c_kv, w.view(num_heads, d, -1))
    return split(w_uk), split(w_uv)
