# MISTAKE: pools the key projection but forgets the value projection
# EXPECT: v_proj
import dataclasses

import torch


def convert_to_gqa(model: TinyDecoder, num_kv_heads: int) -> TinyDecoder:
    cfg = model.config
    h, d = cfg.num_heads, cfg.head_dim
    g = h // num_kv_heads  # query heads per group
    new = TinyDecoder(dataclasses.replace(cfg, num_kv_heads=num_kv_heads))
    state = {name: t.detach().clone() for name, t in model.state_dict().items()}
    for i in range(cfg.num_layers):
        for proj in ("k_proj",):
            key = f"layers.{i}.self_attn.{proj}.weight"
            w = state[key]  # (H * D, dim)
            grouped = w.reshape(num_kv_heads, g, d, w.shape[1])  # (KV, G, D, dim): group j = heads j*G..j*G+G-1
            state[key] = grouped.mean(dim=1).reshape(num_kv_heads * d, w.shape[1])  # (KV * D, dim)
    new.load_state_dict(state)
    return new.eval()
