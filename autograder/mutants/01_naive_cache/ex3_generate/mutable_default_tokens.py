# MISTAKE: collects the new tokens in a mutable default argument, so a second call also returns the first call's tokens
# EXPECT: mutable default argument
@torch.no_grad()
def generate(model, prompt_ids: torch.Tensor, max_new_tokens: int, cache, new_tokens=[]) -> torch.Tensor:
    """Greedy generation with a KV cache."""
    T = prompt_ids.shape[1]
    logits = model(prompt_ids, positions=torch.arange(T), cache=cache)  # prefill: [B, T, V]
    token = logits[:, -1].argmax(dim=-1, keepdim=True)  # [B, 1]
    new_tokens.append(token)
    for step in range(1, max_new_tokens):
        logits = model(token, positions=torch.tensor([T + step - 1]), cache=cache)  # decode: [B, 1, V]
        token = logits[:, -1].argmax(dim=-1, keepdim=True)
        new_tokens.append(token)
    return torch.cat([prompt_ids, *new_tokens], dim=1)  # [B, T + max_new_tokens]
