# MISTAKE: decode positions as a float tensor (torch.tensor([float])) (found by an independent review)
# EXPECT: must be a torch.long tensor
@torch.no_grad()
def generate(model, prompt_ids, max_new_tokens, cache):
    T = prompt_ids.shape[1]
    logits = model(prompt_ids, positions=torch.arange(T), cache=cache)
    token = logits[:, -1].argmax(dim=-1, keepdim=True)
    ids = torch.cat([prompt_ids, token], dim=1)
    pos = float(T)
    for step in range(1, max_new_tokens):
        logits = model(token, positions=torch.tensor([pos]), cache=cache)
        pos += 1
        token = logits[:, -1].argmax(dim=-1, keepdim=True)
        ids = torch.cat([ids, token], dim=1)
    return ids
