# MISTAKE: takes argmax without dim= and .item(), which is right for batch 1 only
# EXPECT: each row picks its own token
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
    token = torch.tensor([[logits[:, -1].argmax().item()]])  # [1, 1]
    ids = torch.cat([prompt_ids, token], dim=1)
    for step in range(1, max_new_tokens):
        position = torch.tensor([T + step - 1])  # where the token we feed sits
        logits = model(token, positions=position, cache=cache)  # decode: [B, 1, V]
        token = torch.tensor([[logits[:, -1].argmax().item()]])
        ids = torch.cat([ids, token], dim=1)
    return ids  # [B, T + max_new_tokens]
