# VALID: repeats the KV heads, computes in float32 with a finfo fill, casts back
def grouped_attention_step(q, k_new, v_new, past=None):
    k_all = k_new if past is None else torch.cat([past[0], k_new], dim=2)
    v_all = v_new if past is None else torch.cat([past[1], v_new], dim=2)
    g = q.shape[1] // k_all.shape[1]
    k, v = repeat_kv(k_all, g).float(), repeat_kv(v_all, g).float()
    t, total = q.shape[2], k.shape[2]
    scores = q.float() @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    future = torch.ones(t, total, dtype=torch.bool).triu(total - t + 1)
    scores = scores.masked_fill(future, torch.finfo(scores.dtype).min)
    return (torch.softmax(scores, dim=-1) @ v).to(q.dtype), (k_all, v_all)
