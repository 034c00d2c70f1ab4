# MISTAKE: uncached run is fed the CACHED run's tokens (teacher forcing) instead of picking its own (found by an independent review)
# EXPECT: each run greedy on its own
@torch.no_grad()
def compare_cached_uncached(model, prompt_ids, max_new_tokens, cache):

    ids_c, logits_c = prompt_ids, []
    token, position = prompt_ids, 0
    for _ in range(max_new_tokens):
        n = token.shape[1]
        step = model(token, positions=torch.arange(position, position + n), cache=cache)[:, -1]
        position += n
        logits_c.append(step)
        token = step.argmax(dim=-1, keepdim=True)
        ids_c = torch.cat([ids_c, token], dim=1)

    logits_u = []
    T = prompt_ids.shape[1]
    for s in range(max_new_tokens):
        ids = ids_c[:, : T + s]
        logits_u.append(model(ids, positions=torch.arange(ids.shape[1]), cache=None)[:, -1])
    ids_u = torch.cat([prompt_ids, torch.stack([l.argmax(-1) for l in logits_u], dim=1)], dim=1)
    diff = (torch.stack(logits_c) - torch.stack(logits_u)).abs().max().item()
    return diff, bool(torch.equal(ids_c, ids_u))
