# VALID: NumPy lexsort per row and head on (position, -score), the mask built in NumPy then converted
import numpy as np
import torch


def h2o_keep(scores, positions, seen, num_sinks, heavy, recent):
    """Which of the n kept tokens H2O keeps after eviction, per batch row and KV head."""
    s = scores.detach().numpy().astype(np.float64)
    p = positions.detach().numpy()
    keep = (p < num_sinks) | (p >= seen - recent)
    for b in range(s.shape[0]):
        for g in range(s.shape[1]):
            free = np.flatnonzero(~keep[b, g])
            order = free[np.lexsort((p[b, g, free], -s[b, g, free]))]
            keep[b, g, order[:heavy]] = True
    return torch.from_numpy(keep)
