# MISTAKE: restores the caller's grad mode after the loop, but not in a finally: when the model raises, grad stays off
# EXPECT: raised midway
def generate_without_graph(model, input_ids: torch.Tensor, n_new: int) -> torch.Tensor:
    was_enabled = torch.is_grad_enabled()
    torch.set_grad_enabled(False)
    cache = NaiveKVCache(model.config.num_layers)
    new = input_ids.new_zeros((input_ids.shape[0], n_new))
    next_input, position = input_ids, 0
    for step in range(n_new):
        positions = torch.arange(position, position + next_input.shape[1])
        logits = model(next_input, positions=positions, cache=cache)
        position += next_input.shape[1]
        new[:, step] = logits[:, -1].argmax(dim=-1)
        next_input = new[:, step : step + 1]
    torch.set_grad_enabled(was_enabled)
    return new
