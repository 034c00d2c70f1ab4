# VALID: repeat_interleave + SDPA with explicit boolean mask (from an independent review)

import torch.nn.functional as F

def grouped_attention_step(q, k_new, v_new, past=None):
    k_all = k_new if past is None else torch.cat((past[0], k_new), dim=2)
    v_all = v_new if past is None else torch.cat((past[1], v_new), dim=2)
    g = q.shape[1] // k_all.shape[1]
    P, T = k_all.shape[2] - q.shape[2], q.shape[2]
    allowed = torch.arange(P + T)[None, :] <= torch.arange(P, P + T)[:, None]
    out = F.scaled_dot_product_attention(q, k_all.repeat_interleave(g, 1), v_all.repeat_interleave(g, 1), attn_mask=allowed)
    return out, (k_all, v_all)
