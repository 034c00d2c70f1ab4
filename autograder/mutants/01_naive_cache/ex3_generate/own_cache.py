# MISTAKE: ignores the `cache` argument and builds its own dense.NaiveKVCache (found by an independent review)
# EXPECT: a cache other than the one generate was given
@torch.no_grad()
def generate(model, prompt_ids, max_new_tokens, cache):
    cache = dense.NaiveKVCache(model.config.num_layers)
    T = prompt_ids.shape[1]
    logits = model(prompt_ids, positions=torch.arange(T), cache=cache)
    token = logits[:, -1].argmax(dim=-1, keepdim=True)
    ids = torch.cat([prompt_ids, token], dim=1)
    for step in range(1, max_new_tokens):
        logits = model(token, positions=torch.tensor([T + step - 1]), cache=cache)
        token = logits[:, -1].argmax(dim=-1, keepdim=True)
        ids = torch.cat([ids, token], dim=1)
    return ids
