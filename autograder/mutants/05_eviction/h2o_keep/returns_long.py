# MISTAKE: returns a 0/1 integer mask instead of torch.bool
# EXPECT: torch.bool
import torch


def h2o_keep(scores, positions, seen, num_sinks, heavy, recent):
    """Which of the n kept tokens H2O keeps after eviction, per batch row and KV head."""
    protected = (positions < num_sinks) | (positions >= seen - recent)
    candidates = scores.masked_fill(protected, float("-inf"))
    order = torch.argsort(candidates, dim=-1, descending=True, stable=True)
    ranks = torch.argsort(order, dim=-1)
    return (protected | ((ranks < heavy) & ~protected)).long()
