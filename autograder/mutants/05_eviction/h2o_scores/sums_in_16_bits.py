# MISTAKE: the weights are summed in their own 16-bit dtype and only then added to the float32 scores
# EXPECT: rounding of the scores
def h2o_scores(scores, weights):
    B, kv_heads, n = scores.shape
    G = weights.shape[1] // kv_heads
    received = weights.reshape(B, kv_heads, G, weights.shape[2], n).sum(dim=(2, 3))
    return scores + received
