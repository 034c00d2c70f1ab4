"""Exercise `kv_bytes_per_token`: the bytes one token adds to the KV cache of a published model."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import torch

from ..common import CheckFailed, as_int, call, shown
from ..delegation import graded
from ..fixtures import bytes_per_element

# No kvlib function takes (shape, bytes_per_element); config_kv_bytes_per_token(shape, dtype) is the
# nearest. The others compute the same formula (ModelShape's sizing methods included).
REFERENCES = (
    "kvlib.cache.gqa.config_kv_bytes_per_token",
    "kvlib.cache.gqa.kv_bytes_per_token",
    "kvlib.memory.kv_cache_bytes",
    "kvlib.memory.ModelShape.kv_bytes_per_token",
    "kvlib.memory.ModelShape.kv_bytes",
    "kvlib.memory.ModelShape.kv_width",
)

# bytes per element -> the dtype name kvlib.memory knows it by
DTYPE_OF = {2: "fp16", 4: "fp32", 1: "int8", 8: "fp64"}


def shapes() -> list[Any]:
    """The published configurations plus synthetic ones that separate the classic mistakes."""
    from kvlib.memory import MODEL_CONFIGS, ModelShape

    extra = [
        ModelShape("synthetic GQA, head_dim != hidden/heads", 3, 12, 4, 40, 256, 1024, 0.1, "check"),
        ModelShape("synthetic MQA", 5, 8, 1, 32, 256, 1024, 0.1, "check"),
    ]
    return list(MODEL_CONFIGS.values()) + extra


def visible_shapes() -> list[Any]:
    from kvlib.memory import MODEL_CONFIGS

    return [MODEL_CONFIGS[n] for n in ("Llama-2-7B", "Llama-2-70B", "Llama-3-8B", "Gemma-7B")]


def value(answer: Any) -> float | None:
    """A learner's numeric answer as a float for comparing, or None when it is not a number."""
    if isinstance(answer, torch.Tensor) and answer.numel() == 1:
        answer = answer.item()
    if isinstance(answer, numbers.Real) and not isinstance(answer, bool):
        return float(answer)
    return None


def same(got: list[float | None], want: list[float]) -> bool:
    return all(g is not None and math.isclose(g, w, rel_tol=1e-12) for g, w in zip(got, want))


def _variants(cases: list[tuple[Any, int]]) -> dict[str, list[float]]:
    def each(f: Callable[[Any, int], float]) -> list[float]:
        return [f(s, b) for s, b in cases]

    return {
        "you used the number of query heads; only the KV heads are cached (num_kv_heads)": each(
            lambda s, b: 2 * s.num_layers * s.num_heads * s.head_dim * b
        ),
        "you used hidden_size as the width of the cached keys; under GQA it is num_kv_heads * head_dim": each(
            lambda s, b: 2 * s.num_layers * s.hidden_size * b
        ),
        "head_dim is a field of the shape: hidden_size // num_heads is not the head width of every model "
        "(Gemma-7B: 3072 // 16 = 192, its heads are 256 wide)": each(
            lambda s, b: 2 * s.num_layers * s.num_kv_heads * (s.hidden_size // s.num_heads) * b
        ),
        "bytes_per_element is not used: multiply by it (2 for fp16, 4 for fp32, 1 for int8)": each(
            lambda s, b: 2 * s.num_layers * s.num_kv_heads * s.head_dim
        ),
        "the factor 2 is missing: keys AND values are cached": each(
            lambda s, b: s.num_layers * s.num_kv_heads * s.head_dim * b
        ),
        "you forgot the layers: every layer caches its own keys and values": each(
            lambda s, b: 2 * s.num_kv_heads * s.head_dim * b
        ),
        "you counted bits, not bytes": each(
            lambda s, b: 2 * s.num_layers * s.num_kv_heads * s.head_dim * b * 8
        ),
    }


def _check_bytes(fn: Callable[..., Any], models: list[Any], per_element: tuple[int, ...]) -> None:
    cases = [(s, b) for b in per_element for s in models]
    got = [call(fn, s, b, what="kv_bytes_per_token") for s, b in cases]
    right = [s.kv_bytes_per_token(dtype=DTYPE_OF[b]) for s, b in cases]
    assert all(bytes_per_element(DTYPE_OF[b]) == b for b in per_element)
    values = [value(g) for g in got]
    wrong = [i for i, (v, r) in enumerate(zip(values, right)) if not same([v], [r])]
    if wrong:
        mistake = next((m for m, vals in _variants(cases).items() if same(values, vals)), None)
        s, b = cases[wrong[0]]
        raise CheckFailed(
            f"kv_bytes_per_token is wrong for {s.name} at {b} byte(s) per element: "
            f"expected {right[wrong[0]]}, "
            f"got {shown(got[wrong[0]])}" + (f"; {mistake}" if mistake else "")
        )
    for (s, b), g in zip(cases, got):
        as_int(g, f"kv_bytes_per_token({s.name}, {b})")
    defaults = [call(fn, s, what="kv_bytes_per_token") for s in models]
    for s, g in zip(models, defaults):
        want = s.kv_bytes_per_token(dtype="fp16")
        if not same([value(g)], [want]):
            raise CheckFailed(
                f"kv_bytes_per_token({s.name}) without bytes_per_element must count fp16, "
                "2 bytes per element "
                f"(the default, bytes_per_element=2): expected {want}, got {shown(g)}"
            )
        as_int(g, f"kv_bytes_per_token({s.name})")


@graded("kv_bytes_per_token", *REFERENCES)
def kv_bytes_per_token_visible(fn: Callable[..., Any]) -> None:
    """Llama-2-7B (MHA), Llama-2-70B and Llama-3-8B (GQA), Gemma-7B (H * head_dim != hidden); fp16, fp32."""
    _check_bytes(fn, visible_shapes(), (2, 4))
    print("kv_bytes_per_token: visible tests passed")


@graded("kv_bytes_per_token", *REFERENCES)
def kv_bytes_per_token_hidden(fn: Callable[..., Any]) -> None:
    """Every configuration of the table (GQA, MQA, head_dim != hidden/heads) at 2, 4, 1 and 8 bytes; ints."""
    _check_bytes(fn, shapes(), (2, 4, 1, 8))
    print("kv_bytes_per_token: hidden tests passed")
