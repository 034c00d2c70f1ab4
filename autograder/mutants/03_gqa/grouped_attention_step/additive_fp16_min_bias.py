# MISTAKE: an additive mask of -65504 (float16's minimum): with large scores in float32 the masked keys leak through
# EXPECT: masked keys leak
def grouped_attention_step(q, k_new, v_new, past=None):
    k_all = k_new if past is None else torch.cat([past[0], k_new], dim=-2)
    v_all = v_new if past is None else torch.cat([past[1], v_new], dim=-2)
    g = q.shape[1] // k_all.shape[1]
    k, v = k_all.repeat_interleave(g, 1), v_all.repeat_interleave(g, 1)
    t, total = q.shape[2], k.shape[2]
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    future = torch.ones(t, total, dtype=torch.bool).triu(total - t + 1)
    scores = scores + future.to(scores.dtype) * -65504.0
    return torch.softmax(scores, dim=-1) @ v, (k_all, v_all)
