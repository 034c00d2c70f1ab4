# MISTAKE: preallocates the output with torch.zeros (float32) and fills it, so the ids come back as floats
# EXPECT: must be torch.long
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
    B, T = prompt_ids.shape
    ids = torch.zeros(B, T + max_new_tokens)  # filled in as we go
    ids[:, :T] = prompt_ids
    logits = model(prompt_ids, positions=torch.arange(T), cache=cache)  # prefill: [B, T, V]
    token = logits[:, -1].argmax(dim=-1, keepdim=True)  # [B, 1]
    ids[:, T : T + 1] = token
    for step in range(1, max_new_tokens):
        position = torch.tensor([T + step - 1])  # where the token we feed sits
        logits = model(token, positions=position, cache=cache)  # decode: [B, 1, V]
        token = logits[:, -1].argmax(dim=-1, keepdim=True)
        ids[:, T + step : T + step + 1] = token
    return ids  # [B, T + max_new_tokens]
