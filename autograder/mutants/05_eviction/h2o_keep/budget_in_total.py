# MISTAKE: keeps the top num_sinks + heavy + recent with protected first, more than heavy others when fewer are protected
# EXPECT: num_sinks + heavy + recent tokens in total
import torch


def h2o_keep(scores, positions, seen, num_sinks, heavy, recent):
    """Which of the n kept tokens H2O keeps after eviction, per batch row and KV head."""
    protected = (positions < num_sinks) | (positions >= seen - recent)
    candidates = scores.masked_fill(protected, float("inf"))
    order = torch.argsort(candidates, dim=-1, descending=True, stable=True)
    budget = num_sinks + heavy + recent
    return torch.zeros_like(protected).scatter(-1, order[..., :budget], True)
