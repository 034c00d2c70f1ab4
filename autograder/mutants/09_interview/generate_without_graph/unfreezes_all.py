# MISTAKE: freezes every parameter for the run and sets requires_grad True on all of them afterwards, also on those the caller had frozen
# EXPECT: the caller had frozen
def generate_without_graph(model, input_ids: torch.Tensor, n_new: int) -> torch.Tensor:
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        if True:
            cache = NaiveKVCache(model.config.num_layers)
            B, T = input_ids.shape
            tokens = []
            x, pos = input_ids, 0
            for _ in range(n_new):
                logits = model(x, positions=torch.arange(pos, pos + x.shape[1]), cache=cache)
                pos += x.shape[1]
                x = logits[:, -1].argmax(dim=-1, keepdim=True)
                tokens.append(x)
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    return torch.cat(tokens, dim=1) if tokens else input_ids.new_zeros((input_ids.shape[0], 0))
