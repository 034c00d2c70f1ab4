# MISTAKE: re-runs the model over the whole sequence at every step instead of using the KV cache
# EXPECT: the whole sequence so far
@torch.no_grad()
def generate_without_graph(model, input_ids: torch.Tensor, n_new: int) -> torch.Tensor:
    ids = input_ids
    for _ in range(n_new):
        logits = model(ids, positions=torch.arange(ids.shape[1]))
        ids = torch.cat([ids, logits[:, -1].argmax(dim=-1, keepdim=True)], dim=1)
    return ids[:, input_ids.shape[1] :]
