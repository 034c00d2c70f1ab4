# MISTAKE: copies only the attention projections into the new model; embeddings, norms and MLPs keep their random init
# EXPECT: must be copied unchanged
import dataclasses

import torch


def convert_to_gqa(model: TinyDecoder, num_kv_heads: int) -> TinyDecoder:
    cfg = model.config
    h, d = cfg.num_heads, cfg.head_dim
    g = h // num_kv_heads
    new = TinyDecoder(dataclasses.replace(cfg, num_kv_heads=num_kv_heads))
    with torch.no_grad():
        for old, layer in zip(model.layers, new.layers):
            layer.self_attn.q_proj.weight.copy_(old.self_attn.q_proj.weight)
            layer.self_attn.o_proj.weight.copy_(old.self_attn.o_proj.weight)
            for proj in ("k_proj", "v_proj"):
                w = getattr(old.self_attn, proj).weight
                pooled = w.reshape(num_kv_heads, g, d, w.shape[1]).mean(dim=1).reshape(num_kv_heads * d, w.shape[1])
                getattr(layer.self_attn, proj).weight.copy_(pooled)
    return new.eval()
