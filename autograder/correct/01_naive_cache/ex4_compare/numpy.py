# VALID: numpy accumulation of the running max, tokens compared with (==).all() as a tensor (from an independent review)
import numpy as np
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

    ids_u, logits_u = prompt_ids, []
    for _ in range(max_new_tokens):
        step = model(ids_u, positions=torch.arange(ids_u.shape[1]), cache=None)[:, -1]
        logits_u.append(step)
        ids_u = torch.cat([ids_u, step.argmax(dim=-1, keepdim=True)], dim=1)

    diff = np.float64(0.0)
    for a, b in zip(logits_c, logits_u):
        diff = max(diff, np.abs(a.double().numpy() - b.double().numpy()).max())
    return diff, (ids_c == ids_u).all()
