# VALID: scaled_dot_product_attention on repeated heads with an explicit boolean mask
import torch.nn.functional as F
def grouped_attention_step(q, k_new, v_new, past=None):
    k_all = k_new if past is None else torch.cat([past[0], k_new], dim=-2)
    v_all = v_new if past is None else torch.cat([past[1], v_new], dim=-2)
    g = q.shape[1] // k_all.shape[1]
    t, total = q.shape[2], k_all.shape[2]
    allowed = torch.ones(t, total, dtype=torch.bool).tril(total - t)
    k, v = k_all.repeat_interleave(g, 1), v_all.repeat_interleave(g, 1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed), (k_all, v_all)
