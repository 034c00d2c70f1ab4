# MISTAKE: catches the model's error and raises its own RuntimeError instead
# EXPECT: raised RuntimeError instead
def generate_without_graph(model, input_ids: torch.Tensor, n_new: int) -> torch.Tensor:
    try:
        with torch.no_grad():
            cache = NaiveKVCache(model.config.num_layers)
            B, T = input_ids.shape
            tokens = []
            x, pos = input_ids, 0
            for _ in range(n_new):
                logits = model(x, positions=torch.arange(pos, pos + x.shape[1]), cache=cache)
                pos += x.shape[1]
                x = logits[:, -1].argmax(dim=-1, keepdim=True)
                tokens.append(x)
    except Exception as exc:
        raise RuntimeError(f"generation failed: {exc}") from None
    return torch.cat(tokens, dim=1) if tokens else input_ids.new_zeros((input_ids.shape[0], 0))
