# MISTAKE: pools the input model's own k_proj/v_proj weights in place (weight.data = pooled), then copies its state_dict
# EXPECT: modified the input model
import dataclasses

import torch


def convert_to_gqa(model: TinyDecoder, num_kv_heads: int) -> TinyDecoder:
    cfg = model.config
    h, d = cfg.num_heads, cfg.head_dim
    g = h // num_kv_heads
    for layer in model.layers:
        for proj in ("k_proj", "v_proj"):
            linear = getattr(layer.self_attn, proj)
            w = linear.weight.data
            linear.weight.data = w.reshape(num_kv_heads, g, d, w.shape[1]).mean(dim=1).reshape(num_kv_heads * d, w.shape[1])
    new = TinyDecoder(dataclasses.replace(cfg, num_kv_heads=num_kv_heads))
    new.load_state_dict(model.state_dict())
    return new.eval()
