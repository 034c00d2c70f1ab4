# VALID: torch.inference_mode() as a with block, a list of tokens and torch.cat, the result cloned after the block (an ordinary tensor)
def generate_without_graph(model, input_ids: torch.Tensor, n_new: int) -> torch.Tensor:
    with torch.inference_mode():
        cache = NaiveKVCache(model.config.num_layers)
        tokens = []
        next_input = input_ids
        for _ in range(n_new):
            logits = model(next_input, cache=cache)  # positions default to the cache's length
            next_input = logits[:, -1].argmax(dim=-1, keepdim=True)
            tokens.append(next_input)
        out = torch.cat(tokens, dim=1) if tokens else torch.empty(input_ids.shape[0], 0, dtype=torch.long)
    return out.clone()
