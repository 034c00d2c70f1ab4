# MISTAKE: makes the KV cache once and reuses it in every call (to save allocations), so a call sees the previous prompt
# EXPECT: state kept between calls
_cache = None


@torch.no_grad()
def generate_without_graph(model, input_ids: torch.Tensor, n_new: int) -> torch.Tensor:
    global _cache
    if _cache is None:
        _cache = NaiveKVCache(model.config.num_layers)
    new = input_ids.new_zeros((input_ids.shape[0], n_new))
    next_input, position = input_ids, 0
    for step in range(n_new):
        positions = torch.arange(position, position + next_input.shape[1])
        logits = model(next_input, positions=positions, cache=_cache)
        position += next_input.shape[1]
        new[:, step] = logits[:, -1].argmax(dim=-1)
        next_input = new[:, step : step + 1]
    return new
