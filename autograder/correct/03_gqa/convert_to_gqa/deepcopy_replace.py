# VALID: deepcopy the model, replace k_proj/v_proj Linear layers with pooled ones, new config via dataclasses.replace (from an independent review)

import copy

def convert_to_gqa(model, num_kv_heads):
    cfg = model.config
    h, d = cfg.num_heads, cfg.head_dim
    g = h // num_kv_heads
    new = TinyDecoder(dataclasses.replace(cfg, num_kv_heads=num_kv_heads))
    with torch.no_grad():
        for (n_new, p_new), (n_old, p_old) in zip(new.named_parameters(), model.named_parameters()):
            assert n_new == n_old
            w = p_old.double()
            if n_old.endswith("k_proj.weight") or n_old.endswith("v_proj.weight"):
                w = torch.stack([w[j * g * d:(j + 1) * g * d].view(g, d, -1).mean(0) for j in range(num_kv_heads)]).reshape(num_kv_heads * d, -1)
            p_new.copy_(w.to(p_new.dtype))
        for (n_new, b_new), (n_old, b_old) in zip(new.named_buffers(), model.named_buffers()):
            b_new.copy_(b_old)
    new.eval()
    return new
