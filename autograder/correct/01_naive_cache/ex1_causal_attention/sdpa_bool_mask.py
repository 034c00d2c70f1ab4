# VALID: torch's scaled_dot_product_attention with an explicit boolean mask built from q_start
import torch.nn.functional as F

def causal_attention(q, k, v, q_start=None):
    Tq, Tk = q.shape[-2], k.shape[-2]
    start = Tk - Tq if q_start is None else q_start
    allowed = torch.arange(Tk)[None, :] <= torch.arange(start, start + Tq)[:, None]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
