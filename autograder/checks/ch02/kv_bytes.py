"""Exercise `ex1_kv_bytes`: the KV-cache size formula, `kv_cache_bytes`.

When an answer is off, the learner's function is evaluated on a few probe shapes and dtypes, and
the classic mistakes (factor 2 missing, bytes per element missing or fixed, bits for bytes, a
dimension forgotten, GiB/GB for bytes) are compared with all of its answers at once: on one input
"the factor 2 is missing" and "the bytes per element are missing" give the same number for fp16,
across dtypes they do not.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import torch

from ..common import CheckFailed, as_int, as_number, call, shown
from ..delegation import graded
from ..fixtures import bytes_per_element

REFERENCES = (
    "kvlib.memory.kv_cache_bytes",
    "kvlib.memory.bytes_per_element",
    "kvlib.memory.ModelShape",
    "kvlib.memory.model_shape",
)
GiB, MiB = 1024**3, 1024**2
SPELLINGS = ("fp32", "fp16", "bf16", "int8", torch.float32, torch.float16, torch.bfloat16, torch.int8)

# (message, wrong value from the right one v and the inputs); b is the true bytes per element.
_Wrong = Callable[[float, int, int, int, int, int, float, Any], float]
MISTAKES: list[tuple[str, _Wrong]] = [
    ("the factor 2 is missing: the cache stores keys AND values", lambda v, L, H, D, T, B, b, d: v / 2),
    ("the factor 2 is counted twice", lambda v, L, H, D, T, B, b, d: v * 2),
    ("bits per element instead of bytes: fp16 is 2 bytes, not 16", lambda v, L, H, D, T, B, b, d: v * 8),
    (
        "the bytes per element are missing: multiply the element count by the dtype's size "
        "(fp32 4, fp16/bf16 2, int8 1)",
        lambda v, L, H, D, T, B, b, d: v / b,
    ),
    (
        "the bytes per element ignore dtype (always 4 bytes, fp32): fp16/bf16 are 2 bytes, int8 is 1",
        lambda v, L, H, D, T, B, b, d: v / b * 4,
    ),
    (
        "the bytes per element ignore dtype (always 2 bytes): fp32 is 4 bytes, int8 is 1",
        lambda v, L, H, D, T, B, b, d: v / b * 2,
    ),
    (
        "a 16-bit dtype (fp16/bf16) counted as 4 bytes: only the mantissa of bf16 is shorter, it is 2 bytes",
        lambda v, L, H, D, T, B, b, d: v * 2 if b == 2 else v,
    ),
    (
        "bf16 counted as 4 bytes: bf16 keeps fp32's exponent but is 2 bytes (16 bits), like fp16",
        lambda v, L, H, D, T, B, b, d: v * 2 if str(d).removeprefix("torch.") in ("bf16", "bfloat16") else v,
    ),
    ("batch is missing: every sequence of the batch has its own keys and values",
     lambda v, L, H, D, T, B, b, d: v / B),
    ("num_layers is missing: every layer caches its own keys and values",
     lambda v, L, H, D, T, B, b, d: v / L),
    (
        "num_kv_heads is missing: one token's keys in one layer are num_kv_heads * head_dim wide",
        lambda v, L, H, D, T, B, b, d: v / H,
    ),
    ("head_dim is missing: each KV head stores head_dim numbers per token",
     lambda v, L, H, D, T, B, b, d: v / D),
    ("seq_len is missing: every token adds its keys and values", lambda v, L, H, D, T, B, b, d: v / T),
    ("the result must be in bytes, not GiB", lambda v, L, H, D, T, B, b, d: v / GiB),
    ("the result must be in bytes, not GB", lambda v, L, H, D, T, B, b, d: v / 1e9),
    ("the result must be in bytes, not MiB", lambda v, L, H, D, T, B, b, d: v / MiB),
]  # fmt: skip

# Probe inputs for the diagnosis: distinct primes, every dtype size.
PROBES = [(3, 5, 7, 11, 13, d) for d in SPELLINGS]


def _what(L: int, H: int, D: int, T: int, B: int, dtype: Any) -> str:
    return (
        f"kv_cache_bytes(num_layers={L}, num_kv_heads={H}, head_dim={D}, seq_len={T}, batch={B}, "
        f"dtype={dtype!r})"
    )


def _expected(L: int, H: int, D: int, T: int, B: int, dtype: Any) -> int:
    from kvlib.memory import kv_cache_bytes

    return kv_cache_bytes(L, H, D, T, B, dtype)


def _value(raw: Any, what: str) -> float | int:
    """The number a learner returned (int kept exact; floats, NumPy numbers and 1-element tensors read)."""
    if isinstance(raw, numbers.Integral) and not isinstance(raw, bool):
        return int(raw)
    return as_number(raw, what)


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _diagnose(fn: Any, case: tuple, got: float) -> list[str]:
    """The mistakes that explain `got` on `case` and the learner's answers on every probe."""
    matching = []
    for message, wrong in MISTAKES:
        ok = True
        for probe in [case, *PROBES]:
            want = _expected(*probe)
            b = bytes_per_element(probe[-1])
            if probe is case:
                value = got
            else:
                try:
                    value = float(fn(*probe))
                except Exception:  # noqa: BLE001 - a probe the learner cannot answer says nothing here
                    continue
            if not _same(value, wrong(want, *probe[:5], b, probe[-1])):
                ok = False
                break
        if ok:
            matching.append(message)
    if matching:
        return matching
    # Nothing explains every probe: say what explains this input (several mistakes may give its number).
    b = bytes_per_element(case[-1])
    return [m for m, wrong in MISTAKES if _same(got, wrong(_expected(*case), *case[:5], b, case[-1]))]


def check_case(fn: Any, L: int, H: int, D: int, T: int, B: int, dtype: Any) -> None:
    what = _what(L, H, D, T, B, dtype)
    want = _expected(L, H, D, T, B, dtype)
    raw = call(fn, L, H, D, T, B, dtype, what=what)
    got = _value(raw, what)
    if not (got == want or _same(float(got), float(want))):
        causes = _diagnose(fn, (L, H, D, T, B, dtype), float(got))
        raise CheckFailed(
            f"{what} returned {shown(raw)}, expected {want}: "
            + (
                "; or ".join(causes)
                if causes
                else "bytes = 2 * layers * num_kv_heads * head_dim * seq_len * batch * bytes_per_element"
            )
        )
    as_int(raw, f"{what} (the right value, {want})")


@graded("kv_cache_bytes", *REFERENCES)
def kv_bytes_visible(fn: Any) -> None:
    check_case(fn, 32, 32, 128, 4096, 1, torch.float16)  # Llama-2-7B, one 4096-token sequence: 2 GiB
    check_case(fn, 32, 8, 128, 1000, 4, "bf16")  # batch > 1, GQA-sized
    check_case(fn, 2, 4, 8, 16, 1, "fp32")
    print("visible tests passed")


@graded("kv_cache_bytes", *REFERENCES)
def kv_bytes_hidden(fn: Any) -> None:
    from kvlib.memory import MODEL_CONFIGS

    # every spelling the docstring allows, each on its own so a missing one is named
    for dtype in SPELLINGS:
        check_case(fn, 3, 5, 7, 11, 13, dtype)
    cases = [
        (6, 2, 48, 100, 3, "bf16"),
        (1, 1, 1, 1, 1, "fp32"),
        (1, 1, 1, 1, 1, torch.int8),
        (12, 12, 64, 1024, 8, torch.float16),
        (80, 8, 128, 0, 4, torch.float16),  # no tokens yet: 0 bytes
        (126, 8, 128, 131072, 64, "fp16"),  # Llama-3.1-405B's full context, batch 64: past 2**32 bytes
    ]
    for shape in MODEL_CONFIGS.values():  # every published shape at its own context length
        cases.append(
            (shape.num_layers, shape.num_kv_heads, shape.head_dim, shape.max_seq_len, 3, torch.bfloat16)
        )
        cases.append((shape.num_layers, shape.num_kv_heads, shape.head_dim, 2047, 5, "int8"))
    for case in cases:
        check_case(fn, *case)
    # the same inputs give the same answer on a second call (nothing remembered between calls)
    check_case(fn, 3, 5, 7, 11, 13, "fp16")
    print("hidden tests passed")
