# MISTAKE: one top-k over the whole flattened tensor, so rows and heads compete for the heavy places
# EXPECT: separately in every batch row and KV head
import torch


def h2o_keep(scores, positions, seen, num_sinks, heavy, recent):
    """Which of the n kept tokens H2O keeps after eviction, per batch row and KV head."""
    protected = (positions < num_sinks) | (positions >= seen - recent)
    candidates = scores.masked_fill(protected, float("-inf")).flatten()
    top = candidates.topk(min(heavy, candidates.numel())).indices
    keep = protected.flatten().clone()
    keep[top] = True
    return keep.view(protected.shape)
