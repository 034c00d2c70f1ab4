# MISTAKE: topk(heavy) without a bound, which raises when the cache holds fewer than heavy tokens
# EXPECT: fewer unprotected tokens than heavy
import torch


def h2o_keep(scores, positions, seen, num_sinks, heavy, recent):
    """Which of the n kept tokens H2O keeps after eviction, per batch row and KV head."""
    protected = (positions < num_sinks) | (positions >= seen - recent)
    candidates = scores.masked_fill(protected, float("-inf"))
    candidates = candidates - 1e-5 * positions  # a tie goes to the lower position
    top = candidates.topk(heavy, dim=-1).indices
    picked = torch.zeros_like(protected).scatter(-1, top, True)
    return protected | (picked & ~protected)
