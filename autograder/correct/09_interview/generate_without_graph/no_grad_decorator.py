# VALID: @torch.no_grad() as a decorator, positions left to the model's default (the cache's length), a preallocated torch.long buffer
@torch.no_grad()
def generate_without_graph(model, input_ids: torch.Tensor, n_new: int) -> torch.Tensor:
    cache = NaiveKVCache(model.config.num_layers)
    out = torch.empty(input_ids.shape[0], n_new, dtype=torch.long)
    x = input_ids
    for i in range(n_new):
        x = model(x, cache=cache)[:, -1].argmax(-1, keepdim=True)
        out[:, i : i + 1] = x
    return out
