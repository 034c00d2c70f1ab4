# MISTAKE: sorts ascending (ties ordered right) and takes order[..., -heavy:], all tokens when heavy = 0
# EXPECT: heavy = 0
import torch


def h2o_keep(scores, positions, seen, num_sinks, heavy, recent):
    """Which of the n kept tokens H2O keeps after eviction, per batch row and KV head."""
    protected = (positions < num_sinks) | (positions >= seen - recent)
    n = scores.shape[-1]
    candidates = scores.masked_fill(protected, float("-inf")).flip(-1)  # ties: the lower position last
    order = n - 1 - torch.argsort(candidates, dim=-1, stable=True)
    picked = torch.zeros_like(protected).scatter(-1, order[..., -heavy:], True)
    return protected | (picked & ~protected)
