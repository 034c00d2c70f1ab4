# VALID: plain Python loops over rows and heads, sorting (-score, position) tuples, a bool tensor built at the end
import torch


def h2o_keep(scores, positions, seen, num_sinks, heavy, recent):
    """Which of the n kept tokens H2O keeps after eviction, per batch row and KV head."""
    B, KV, n = scores.shape
    keep = [[[False] * n for _ in range(KV)] for _ in range(B)]
    for b in range(B):
        for g in range(KV):
            others = []
            for i in range(n):
                p = int(positions[b, g, i])
                if p < num_sinks or p >= seen - recent:
                    keep[b][g][i] = True
                else:
                    others.append((-float(scores[b, g, i]), p, i))
            for _, _, i in sorted(others)[:heavy]:
                keep[b][g][i] = True
    return torch.tensor(keep, dtype=torch.bool).reshape(B, KV, n)
