# MISTAKE: the tie-break folded into the score (score - 1e-6 * position) outweighs real score differences
# EXPECT: should be evicted
def h2o_keep(scores, positions, seen, num_sinks, heavy, recent):
    protected = (positions < num_sinks) | (positions >= seen - recent)
    candidates = scores.masked_fill(protected, float("-inf"))
    order = torch.argsort(candidates - positions.float() * 1e-6, dim=-1, descending=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(-1, order, torch.arange(order.shape[-1]).expand_as(order).contiguous())
    others = (~protected).sum(-1, keepdim=True)
    heavy_kept = (ranks < heavy) & (ranks < others)
    return protected | (heavy_kept & ~protected)
