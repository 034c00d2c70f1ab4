# MISTAKE: generates with grad mode on (no torch.no_grad at all): every step records a graph that the cache keeps alive
# EXPECT: recorded an autograd graph
def generate_without_graph(model, input_ids: torch.Tensor, n_new: int) -> torch.Tensor:
    cache = NaiveKVCache(model.config.num_layers)
    tokens = []
    next_input, position = input_ids, 0
    for _ in range(n_new):
        positions = torch.arange(position, position + next_input.shape[1])
        logits = model(next_input, positions=positions, cache=cache)
        position += next_input.shape[1]
        next_input = logits[:, -1].argmax(dim=-1, keepdim=True)
        tokens.append(next_input)
    return torch.cat(tokens, dim=1) if tokens else input_ids.new_zeros((input_ids.shape[0], 0))
