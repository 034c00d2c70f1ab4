# VALID: one loop per run collecting [B, steps, V] logits, the answer as a NumPy float and a tensor bool
def compare_cached_uncached(model, prompt_ids, max_new_tokens, cache):
    with torch.no_grad():
        cached, ids_c, feed, pos = [], prompt_ids, prompt_ids, 0
        for _ in range(max_new_tokens):
            out = model(feed, positions=torch.arange(pos, pos + feed.shape[1]), cache=cache)[:, -1]
            pos += feed.shape[1]
            feed = out.argmax(-1, keepdim=True)
            cached.append(out)
            ids_c = torch.cat([ids_c, feed], 1)
        uncached, ids_u = [], prompt_ids
        for _ in range(max_new_tokens):
            out = model(ids_u, positions=torch.arange(ids_u.shape[1]), cache=None)[:, -1]
            uncached.append(out)
            ids_u = torch.cat([ids_u, out.argmax(-1, keepdim=True)], 1)
    diff = (torch.stack(cached, 1) - torch.stack(uncached, 1)).abs().max()
    return diff.numpy().astype("float64"), (ids_c == ids_u).all()
