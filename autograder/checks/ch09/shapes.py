"""Model shapes the chapter 09 checks share: hand-made ones (head counts and widths no published model
has) and the label a message names a shape by."""

from __future__ import annotations

from kvlib.memory import ModelShape


def hand_made(
    num_heads: int, num_kv_heads: int, head_dim: int, num_layers: int = 4, params_b: float = 1.5
) -> ModelShape:
    return ModelShape(
        f"a hand-made shape ({num_layers} layers, {num_heads} query heads, {num_kv_heads} KV heads of "
        f"head_dim {head_dim}, {params_b:g}B parameters)",
        num_layers,
        num_heads,
        num_kv_heads,
        head_dim,
        num_heads * head_dim,
        4096,
        params_b,
        "grader",
    )


def shape_label(shape: ModelShape) -> str:
    if shape.name.startswith("a hand-made"):
        return shape.name
    return (
        f"{shape.name} ({shape.num_layers} layers, {shape.num_heads} query heads, {shape.num_kv_heads} KV "
        f"heads of {shape.head_dim}, {shape.params_b:g}B parameters)"
    )
