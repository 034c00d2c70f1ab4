# VALID: no sort: each candidate's rank is the number of candidates that beat it (higher score, or equal score and lower position)
import torch


def h2o_keep(scores, positions, seen, num_sinks, heavy, recent):
    """Which of the n kept tokens H2O keeps after eviction, per batch row and KV head."""
    protected = torch.logical_or(positions < num_sinks, positions >= seen - recent)
    candidate = ~protected
    s_i, s_j = scores[..., :, None], scores[..., None, :]
    p_i, p_j = positions[..., :, None], positions[..., None, :]
    beats = candidate[..., None, :] & ((s_j > s_i) | ((s_j == s_i) & (p_j < p_i)))  # j beats i
    rank = beats.sum(dim=-1)
    return torch.where(candidate, rank < heavy, protected)
