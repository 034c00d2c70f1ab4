# VALID: torch.set_grad_enabled(False) restored in a finally, model.eval() for the run and the mode put back, a while loop
def generate_without_graph(model, input_ids: torch.Tensor, n_new: int) -> torch.Tensor:
    was_enabled, was_training = torch.is_grad_enabled(), model.training
    torch.set_grad_enabled(False)
    model.eval()
    try:
        B, T = input_ids.shape
        cache = NaiveKVCache(model.config.num_layers)
        out = torch.zeros(B, n_new, dtype=torch.long)
        fed, count = input_ids, 0
        while count < n_new:
            start = T + count - 1 if count else 0
            logits = model(fed, positions=torch.arange(start, start + fed.shape[1]), cache=cache)
            out[:, count] = logits[:, -1, :].argmax(-1)
            fed = out[:, count].unsqueeze(1)
            count += 1
        return out
    finally:
        model.train(was_training)
        torch.set_grad_enabled(was_enabled)
