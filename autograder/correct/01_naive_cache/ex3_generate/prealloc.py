# VALID: fresh preallocated output per call, generic loop with a running position (from an independent review)
@torch.no_grad()
def generate(model, prompt_ids, max_new_tokens, cache):
    B, T = prompt_ids.shape
    out = torch.empty(B, T + max_new_tokens, dtype=torch.long)
    out[:, :T] = prompt_ids
    inp, pos = prompt_ids, 0
    for s in range(max_new_tokens):
        n = inp.shape[1]
        logits = model(inp, positions=torch.arange(pos, pos + n, dtype=torch.long), cache=cache)
        pos += n
        out[:, T + s] = logits[:, -1, :].argmax(-1)
        inp = out[:, T + s : T + s + 1].clone()
    return out
