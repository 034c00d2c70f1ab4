# MISTAKE: pools in float16 and leaves the weights rounded to half precision (loses precision; weights not "the mean") (found by an independent review)
# EXPECT: through float16
def convert_to_gqa(model, num_kv_heads):
    cfg = model.config
    h, d = cfg.num_heads, cfg.head_dim
    g = h // num_kv_heads
    new = TinyDecoder(dataclasses.replace(cfg, num_kv_heads=num_kv_heads))
    state = {name: t.detach().clone() for name, t in model.state_dict().items()}
    for i in range(cfg.num_layers):
        for proj in ("k_proj", "v_proj"):
            key = f"layers.{i}.self_attn.{proj}.weight"
            w = state[key].half()
            state[key] = w.reshape(num_kv_heads, g, d, w.shape[1]).mean(dim=1).reshape(num_kv_heads * d, w.shape[1]).float()
    new.load_state_dict(state)
    return new.eval()
