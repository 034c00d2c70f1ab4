# MISTAKE: every 64 decode steps "refreshes" the cache: reset() and re-prefill the whole sequence (extra model calls on more than one token, not one decode call per token) (found by an independent review)
# EXPECT: feed only the newest token
@torch.no_grad()
def generate(model, prompt_ids, max_new_tokens, cache):
    T = prompt_ids.shape[1]
    logits = model(prompt_ids, positions=torch.arange(T), cache=cache)
    ids = torch.cat([prompt_ids, logits[:, -1].argmax(dim=-1, keepdim=True)], dim=1)
    for step in range(1, max_new_tokens):
        logits = model(ids[:, -1:], positions=torch.arange(T + step - 1, T + step), cache=cache)
        if step % 64 == 0:
            cache.reset()
            logits = model(ids, positions=torch.arange(ids.shape[1]), cache=cache)
        ids = torch.cat([ids, logits[:, -1].argmax(dim=-1, keepdim=True)], dim=1)
    return ids
