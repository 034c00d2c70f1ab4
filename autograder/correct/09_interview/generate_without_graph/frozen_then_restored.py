# VALID: no grad-mode change at all: the parameters are frozen for the run and every requires_grad restored in a finally
def generate_without_graph(model, input_ids: torch.Tensor, n_new: int) -> torch.Tensor:
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        cache = NaiveKVCache(model.config.num_layers)
        new = []
        x = input_ids
        for i in range(n_new):
            start = 0 if i == 0 else input_ids.shape[1] + i - 1
            logits = model(x, positions=torch.arange(start, start + x.shape[1]), cache=cache)
            x = logits[:, -1:].argmax(dim=-1)  # [B, 1]
            new.append(x)
        return torch.cat(new, dim=1) if new else input_ids[:, :0].clone()
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
