# MISTAKE: returns the prompt followed by the new tokens, as chapter 01's generate did
# EXPECT: the prompt too
@torch.no_grad()
def generate_without_graph(model, input_ids: torch.Tensor, n_new: int) -> torch.Tensor:
    cache = NaiveKVCache(model.config.num_layers)
    ids, next_input = input_ids, input_ids
    for _ in range(n_new):
        positions = torch.arange(ids.shape[1] - next_input.shape[1], ids.shape[1])
        logits = model(next_input, positions=positions, cache=cache)
        next_input = logits[:, -1].argmax(dim=-1, keepdim=True)
        ids = torch.cat([ids, next_input], dim=1)
    return ids
