"""Exercise `gqa_saving_factor`: by what factor the KV cache is smaller than the MHA twin's."""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import torch

from ..common import CheckFailed, call, shown
from ..delegation import graded
from . import kv_bytes
from .kv_bytes import same, shapes, value, visible_shapes

# kvlib's saving factor first, then every kvlib sizing formula (the byte counts it is a ratio of).
REFERENCES = ("kvlib.cache.gqa.kv_saving_factor", *kv_bytes.REFERENCES)


def _variants(models: list[Any]) -> dict[str, list[float]]:
    def each(f: Callable[[Any], float]) -> list[float]:
        return [f(s) for s in models]

    return {
        "the ratio is upside down: MHA bytes divided by this model's bytes is >= 1": each(
            lambda s: s.num_kv_heads / s.num_heads
        ),
        "that is the fraction of memory saved (1 - KV/H), not the factor by which the cache shrinks": each(
            lambda s: 1 - s.num_kv_heads / s.num_heads
        ),
        "that is the percentage of memory saved, not the factor by which the cache shrinks": each(
            lambda s: 100 * (1 - s.num_kv_heads / s.num_heads)
        ),
        "that is the number of heads saved (H - KV), not a factor": each(
            lambda s: s.num_heads - s.num_kv_heads
        ),
        "that is the factor minus one (how much MORE the MHA twin caches, relative); the factor itself is "
        "MHA bytes / this model's bytes, 1.0 for MHA": each(lambda s: s.num_heads / s.num_kv_heads - 1),
        "you compared with MQA (1 KV head); the baseline is MHA with one KV head per query head": each(
            lambda s: s.num_kv_heads
        ),
        "the MHA twin caches num_heads * head_dim per layer and token, which is not always hidden_size": each(
            lambda s: s.hidden_size / (s.num_kv_heads * s.head_dim)
        ),
    }


def _as_float(answer: Any, s: Any) -> None:
    what = f"gqa_saving_factor({s.name})"
    if isinstance(answer, torch.Tensor):
        raise CheckFailed(f"{what} must return a Python float, got a tensor {shown(answer)}: use .item()")
    if isinstance(answer, numbers.Integral):
        raise CheckFailed(
            f"{what} must return a float, got {type(answer).__name__} {answer!r}: divide with / (true "
            "division), not // (the factor is 1.0 for MHA)"
        )
    if not isinstance(answer, float):  # numpy.float64 is a float; Fraction and Decimal are not
        raise CheckFailed(
            f"{what} must return a Python float, got {type(answer).__name__} {answer!r}: convert it "
            "with float(...)"
        )


def _check_saving(fn: Callable[..., Any], models: list[Any]) -> None:
    """Raise with a diagnosis unless `fn` gives H / KV, as a float, for every shape."""
    from kvlib.cache.gqa import kv_saving_factor

    got = [call(fn, s, what="gqa_saving_factor") for s in models]
    right = [kv_saving_factor(s) for s in models]
    values = [value(g) for g in got]
    wrong = [i for i, (v, r) in enumerate(zip(values, right)) if not same([v], [r])]
    if wrong:
        mistake = next((m for m, vals in _variants(models).items() if same(values, vals)), None)
        i = wrong[0]
        s = models[i]
        raise CheckFailed(
            f"gqa_saving_factor is wrong for {s.name} ({s.num_heads} query heads, {s.num_kv_heads} KV "
            "heads): "
            f"expected {right[i]!r}, got {shown(got[i])}" + (f"; {mistake}" if mistake else "")
        )
    for s, g in zip(models, got):
        _as_float(g, s)


@graded("gqa_saving_factor", *REFERENCES)
def saving_factor_visible(fn: Callable[..., Any]) -> None:
    """Llama-2-70B keeps 8 KV heads for 64 query heads, Llama-3-8B 8 for 32; MHA models give 1.0."""
    _check_saving(fn, visible_shapes())
    print("gqa_saving_factor: visible tests passed")


@graded("gqa_saving_factor", *REFERENCES)
def saving_factor_hidden(fn: Callable[..., Any]) -> None:
    """Every configuration (MHA gives 1.0), head_dim != hidden / heads, MQA; a float each time."""
    _check_saving(fn, shapes())
    print("gqa_saving_factor: hidden tests passed")
