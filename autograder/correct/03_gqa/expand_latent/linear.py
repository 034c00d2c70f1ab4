# VALID: F.linear then unflatten/transpose, contiguous (from an independent review)
import torch.nn.functional as F
def expand_latent(c_kv, w_uk, w_uv, num_heads):
    f = lambda w: F.linear(c_kv, w).unflatten(-1, (num_heads, -1)).transpose(1, 2).contiguous()
    return f(w_uk), f(w_uv)
