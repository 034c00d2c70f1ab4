# VALID: a deep-copied config and parameters copied in place into a fresh TinyDecoder
import copy
def convert_to_gqa(model, num_kv_heads):
    cfg = copy.deepcopy(model.config)
    cfg.num_kv_heads = num_kv_heads
    new = TinyDecoder(cfg).eval()
    g, d = cfg.num_heads // num_kv_heads, cfg.head_dim
    with torch.no_grad():
        for name, p in new.named_parameters():
            old = model.get_parameter(name)
            if old.shape != p.shape:  # k_proj / v_proj
                old = old.view(num_kv_heads, g, d, -1).mean(1).reshape(p.shape)
            p.copy_(old)
    return new
