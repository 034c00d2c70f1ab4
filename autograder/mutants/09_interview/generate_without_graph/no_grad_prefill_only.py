# MISTAKE: puts only the prefill under torch.no_grad(); the decode loop runs with grad on
# EXPECT: the decode calls recorded an autograd graph
def generate_without_graph(model, input_ids: torch.Tensor, n_new: int) -> torch.Tensor:
    B, T = input_ids.shape
    if n_new == 0:
        return input_ids.new_zeros((B, 0))
    cache = NaiveKVCache(model.config.num_layers)
    with torch.no_grad():
        logits = model(input_ids, positions=torch.arange(T), cache=cache)
    token = logits[:, -1].argmax(dim=-1, keepdim=True)
    tokens = [token]
    for step in range(1, n_new):
        logits = model(token, positions=torch.tensor([T + step - 1]), cache=cache)
        token = logits[:, -1].argmax(dim=-1, keepdim=True)
        tokens.append(token)
    return torch.cat(tokens, dim=1)
