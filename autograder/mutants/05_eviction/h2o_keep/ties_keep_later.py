# MISTAKE: sorts ascending and takes the last heavy, so a tie in score keeps the later position
# EXPECT: tie
import torch


def h2o_keep(scores, positions, seen, num_sinks, heavy, recent):
    """Which of the n kept tokens H2O keeps after eviction, per batch row and KV head."""
    protected = (positions < num_sinks) | (positions >= seen - recent)
    candidates = scores.masked_fill(protected, float("-inf"))
    order = torch.argsort(candidates, dim=-1, stable=True)  # ascending
    keep = protected.clone()
    if heavy > 0:
        keep.scatter_(-1, order[..., -heavy:], True)
    return keep
