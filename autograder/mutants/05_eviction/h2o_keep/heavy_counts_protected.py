# MISTAKE: picks the heavy hitters among all tokens, so sinks and recent tokens use up heavy places
# EXPECT: among all tokens
import torch


def h2o_keep(scores, positions, seen, num_sinks, heavy, recent):
    """Which of the n kept tokens H2O keeps after eviction, per batch row and KV head."""
    protected = (positions < num_sinks) | (positions >= seen - recent)
    top = torch.topk(scores, min(heavy, scores.shape[-1]), dim=-1).indices
    chosen = torch.zeros_like(protected).scatter(-1, top, True)
    return protected | chosen
