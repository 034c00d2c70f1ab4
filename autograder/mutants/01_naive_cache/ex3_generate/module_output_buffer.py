# MISTAKE: a module-level output buffer reused across calls; returns a view a later call overwrites (found by an independent review)
# EXPECT: changed after a later call
_OUT = torch.zeros(0, 0, dtype=torch.long)

@torch.no_grad()
def generate(model, prompt_ids, max_new_tokens, cache):
    global _OUT
    B, T = prompt_ids.shape
    if _OUT.shape[0] < B or _OUT.shape[1] < T + max_new_tokens:
        _OUT = torch.zeros(max(B, _OUT.shape[0]), max(T + max_new_tokens, _OUT.shape[1]), dtype=torch.long)
    out = _OUT[:B, : T + max_new_tokens]
    out[:, :T] = prompt_ids
    logits = model(prompt_ids, positions=torch.arange(T), cache=cache)
    token = logits[:, -1].argmax(dim=-1, keepdim=True)
    out[:, T : T + 1] = token
    for step in range(1, max_new_tokens):
        logits = model(token, positions=torch.tensor([T + step - 1]), cache=cache)
        token = logits[:, -1].argmax(dim=-1, keepdim=True)
        out[:, T + step : T + step + 1] = token
    return out
