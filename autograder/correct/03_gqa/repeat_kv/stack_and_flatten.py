# VALID: stack n_rep copies after each head and flatten, a clone for n_rep=1
def repeat_kv(x, n_rep):
    if n_rep == 1:
        return x.clone()
    return torch.stack([x] * n_rep, dim=2).flatten(1, 2)
