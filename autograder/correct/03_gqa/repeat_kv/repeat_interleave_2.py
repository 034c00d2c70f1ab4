# VALID: repeat_interleave on the head axis (from an independent review)
def repeat_kv(x, n_rep):

    return torch.repeat_interleave(x, n_rep, dim=1)
