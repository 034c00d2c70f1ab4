# MISTAKE: reuses prompt_ids[:, -1:] as the one-token input buffer and copies each new token into it, overwriting the caller's prompt
# EXPECT: modified its input prompt_ids
@torch.no_grad()
def generate(model, prompt_ids: torch.Tensor, max_new_tokens: int, cache) -> torch.Tensor:
    """Greedy generation with a KV cache.

    prompt_ids: [B, T] token ids; cache: an empty cache object; max_new_tokens >= 1.
    Call the model once on the whole prompt (prefill, positions 0..T-1), then once per further
    token on that single token (decode): the token chosen at step s-1 is fed at position T + s - 1.
    Always call model(input_ids, positions=..., cache=cache) where positions is a LongTensor of
    shape [T_in] shared by the batch (e.g. torch.arange(T), torch.tensor([T + s - 1])); logits are
    [B, T_in, vocab] and the next token is the argmax of the last position's logits.
    Returns [B, T + max_new_tokens]: the prompt followed by the new tokens.
    """
    T = prompt_ids.shape[1]
    logits = model(prompt_ids, positions=torch.arange(T), cache=cache)  # prefill: [B, T, V]
    token = prompt_ids[:, -1:]  # [B, 1] input buffer for the decode steps
    new_tokens = []
    for step in range(max_new_tokens):
        if step > 0:
            logits = model(token, positions=torch.tensor([T + step - 1]), cache=cache)  # decode: [B, 1, V]
        token.copy_(logits[:, -1].argmax(dim=-1, keepdim=True))  # no new tensor per step
        new_tokens.append(token.clone())
    return torch.cat([prompt_ids, *new_tokens], dim=1)  # [B, T + max_new_tokens]
