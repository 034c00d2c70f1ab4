# MISTAKE: memoises by (id(c_kv), num_heads): a latent cache tensor reused (same object, new contents / a freed id reused) returns a stale expansion (found by an independent review)
# EXPECT: after the latents changed in place
_MEMO = {}
def expand_latent(c_kv, w_uk, w_uv, num_heads):
    key = (id(c_kv), id(w_uk), id(w_uv), num_heads)
    if key not in _MEMO:
        b, t, _ = c_kv.shape
        d = w_uk.shape[0] // num_heads
        k = (c_kv @ w_uk.T).view(b, t, num_heads, d).transpose(1, 2)
        v = (c_kv @ w_uv.T).view(b, t, num_heads, d).transpose(1, 2)
        _MEMO[key] = (k, v)
    return _MEMO[key]
