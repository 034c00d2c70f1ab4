# MISTAKE: compares softmax probabilities instead of logits
# EXPECT: not probabilities
@torch.no_grad()
def compare_cached_uncached(model, prompt_ids: torch.Tensor, max_new_tokens: int, cache) -> tuple[float, bool]:
    """Generate greedily twice and compare: once with `cache`, once recomputing everything.

    Cached run: prefill the prompt, then decode one token per step (as in `generate`).
    Uncached run: at every step call model(all_ids_so_far, positions=0..t-1, cache=None).
    Each run picks its own greedy tokens. Record the next-token logits [B, V] of every step.
    Returns (max absolute difference between the two runs' logits over all steps,
             True if the two generated id sequences are identical).
    """
    T = prompt_ids.shape[1]
    ids_c, logits_c = prompt_ids, []
    token, position = prompt_ids, 0
    for _ in range(max_new_tokens):
        n = token.shape[1]
        step_logits = model(token, positions=torch.arange(position, position + n), cache=cache)[:, -1]
        position += n
        logits_c.append(step_logits)
        token = step_logits.argmax(dim=-1, keepdim=True)
        ids_c = torch.cat([ids_c, token], dim=1)
    ids_u, logits_u = prompt_ids, []
    for _ in range(max_new_tokens):
        step_logits = model(ids_u, positions=torch.arange(ids_u.shape[1]), cache=None)[:, -1]
        logits_u.append(step_logits)
        ids_u = torch.cat([ids_u, step_logits.argmax(dim=-1, keepdim=True)], dim=1)
    diff = (torch.stack(logits_c).softmax(-1) - torch.stack(logits_u).softmax(-1)).abs().max().item()
    return diff, bool(torch.equal(ids_c, ids_u))
