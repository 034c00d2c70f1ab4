# VALID: F.scaled_dot_product_attention with an explicit boolean mask (from an independent review)
import torch.nn.functional as F
def causal_attention(q, k, v, q_start=None):
    Tq, Tk = q.shape[-2], k.shape[-2]
    if q_start is None:
        q_start = Tk - Tq
    allowed = torch.arange(Tk)[None, :] <= torch.arange(q_start, q_start + Tq)[:, None]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
