# MISTAKE: reuses the input model's modules for everything it does not pool, so both models share those weights
# EXPECT: shares weights with the input model
import dataclasses

import torch


def convert_to_gqa(model: TinyDecoder, num_kv_heads: int) -> TinyDecoder:
    cfg = model.config
    h, d = cfg.num_heads, cfg.head_dim
    g = h // num_kv_heads
    new = TinyDecoder(dataclasses.replace(cfg, num_kv_heads=num_kv_heads))
    for name, module in model.named_children():
        if name != "layers":
            setattr(new, name, module)  # embeddings, final norm, head: nothing to change
    for old, layer in zip(model.layers, new.layers):
        for name, module in old.named_children():
            if name != "self_attn":
                setattr(layer, name, module)  # norms and MLP unchanged
        layer.self_attn.q_proj = old.self_attn.q_proj
        layer.self_attn.o_proj = old.self_attn.o_proj
        with torch.no_grad():
            for proj in ("k_proj", "v_proj"):
                w = getattr(old.self_attn, proj).weight
                pooled = w.reshape(num_kv_heads, g, d, w.shape[1]).mean(dim=1).reshape(num_kv_heads * d, w.shape[1])
                getattr(layer.self_attn, proj).weight.copy_(pooled)
    return new.eval()
