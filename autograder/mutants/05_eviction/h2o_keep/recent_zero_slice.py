# MISTAKE: protects the window with [..., -recent:], which is every token when recent = 0
# EXPECT: recent = 0
import torch


def h2o_keep(scores, positions, seen, num_sinks, heavy, recent):
    """Which of the n kept tokens H2O keeps after eviction, per batch row and KV head."""
    protected = positions < num_sinks
    window = torch.zeros_like(protected)
    window[..., -recent:] = True
    protected = protected | window | (positions >= seen - recent)
    candidates = scores.masked_fill(protected, float("-inf"))
    order = torch.argsort(candidates, dim=-1, descending=True, stable=True)
    ranks = torch.argsort(order, dim=-1)
    return protected | ((ranks < heavy) & ~protected)
