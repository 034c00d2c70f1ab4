# MISTAKE: averages one relative error per batch row instead of one norm over the whole tensor
# EXPECT: one relative error per batch row
import torch


def layout_errors(x, bits, group_size):
    x = x.float()
    *lead, T, D = x.shape
    L = 2**bits - 1
    G = group_size

    def fq(g, dim):
        lo = g.amin(dim=dim, keepdim=True)
        scale = (g.amax(dim=dim, keepdim=True) - lo) / L
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        return torch.round((g - lo) / scale).clamp(0, L) * scale + lo

    tok = fq(x.reshape(*lead, T, D // G, G), -1).reshape(x.shape)
    ch = fq(x.reshape(*lead, T // G, G, D), -2).reshape(x.shape)
    def rel(x_hat):
        if x.dim() == 2:
            return ((x - x_hat).norm() / x.norm()).item()
        errors = [((x[b] - x_hat[b]).norm() / x[b].norm()).item() for b in range(x.shape[0])]
        return sum(errors) / len(errors)

    return {"per_token": rel(tok), "per_channel": rel(ch)}
