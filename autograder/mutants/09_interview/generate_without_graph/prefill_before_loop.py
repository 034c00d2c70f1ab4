# MISTAKE: runs the prefill and takes its token before the loop, so n_new = 0 still returns one token
# EXPECT: with n_new = 0 return an empty
def generate_without_graph(model, input_ids: torch.Tensor, n_new: int) -> torch.Tensor:
    T = input_ids.shape[1]
    with torch.no_grad():
        cache = NaiveKVCache(model.config.num_layers)
        logits = model(input_ids, positions=torch.arange(T), cache=cache)
        tokens = [logits[:, -1].argmax(dim=-1, keepdim=True)]
        for step in range(1, n_new):
            logits = model(tokens[-1], positions=torch.tensor([T + step - 1]), cache=cache)
            tokens.append(logits[:, -1].argmax(dim=-1, keepdim=True))
    return torch.cat(tokens, dim=1)
