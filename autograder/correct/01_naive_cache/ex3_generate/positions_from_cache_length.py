# VALID: reads each step's position from cache.seq_len and concatenates the new tokens once at the end
def generate(model, prompt_ids, max_new_tokens, cache):
    with torch.no_grad():
        new_tokens = []
        inputs = prompt_ids
        for _ in range(max_new_tokens):
            start = cache.seq_len
            positions = torch.arange(start, start + inputs.shape[1])
            logits = model(inputs, positions=positions, cache=cache)
            inputs = logits[:, -1, :].argmax(dim=-1).unsqueeze(1)
            new_tokens.append(inputs)
        return torch.cat([prompt_ids, *new_tokens], dim=1)
