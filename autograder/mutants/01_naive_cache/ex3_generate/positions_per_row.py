# MISTAKE: positions of shape [B, T_in] (expanded over the batch) instead of [T_in] shared by the batch (found by an independent review)
# EXPECT: shared by the batch
@torch.no_grad()
def generate(model, prompt_ids, max_new_tokens, cache):
    T = prompt_ids.shape[1]
    logits = model(prompt_ids, positions=torch.arange(T).expand(prompt_ids.shape[0], T), cache=cache)
    token = logits[:, -1].argmax(dim=-1, keepdim=True)
    ids = torch.cat([prompt_ids, token], dim=1)
    for step in range(1, max_new_tokens):
        logits = model(token, positions=torch.full((prompt_ids.shape[0], 1), T + step - 1), cache=cache)
        token = logits[:, -1].argmax(dim=-1, keepdim=True)
        ids = torch.cat([ids, token], dim=1)
    return ids
