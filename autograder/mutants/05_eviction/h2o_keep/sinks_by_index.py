# MISTAKE: takes the first num_sinks entries as the sinks, not the tokens at positions < num_sinks
# EXPECT: by index
import torch


def h2o_keep(scores, positions, seen, num_sinks, heavy, recent):
    """Which of the n kept tokens H2O keeps after eviction, per batch row and KV head."""
    protected = positions >= seen - recent
    protected[..., :num_sinks] = True
    candidates = scores.masked_fill(protected, float("-inf"))
    order = torch.argsort(candidates, dim=-1, descending=True, stable=True)
    ranks = torch.argsort(order, dim=-1)
    return protected | ((ranks < heavy) & ~protected)
