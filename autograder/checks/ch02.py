"""Checks for chapter 02 (memory): the KV-size formula, measuring a cache, a static cache, numbers.

Numeric answers are compared by value; when they are off, the ratio to the right answer usually
names the mistake (1/2: keys or values forgotten; 8: query heads instead of KV heads under GQA;
1.074: GB instead of GiB), so the checks test those ratios first.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import torch

from .common import CheckFailed, call, expect

GiB = 1024**3

# --------------------------------------------------------------------------------------------
# Exercise 1: kv_cache_bytes
# --------------------------------------------------------------------------------------------

_DTYPE_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}


def _bpe(dtype: Any) -> int:
    if isinstance(dtype, torch.dtype):
        return torch.empty((), dtype=dtype).element_size()
    return _DTYPE_BYTES[dtype]


def _dtype_bits(dtype: Any) -> int:
    return 8 * _bpe(dtype)


def _as_number(value: Any, what: str) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    expect(
        isinstance(value, (int, float)) and not isinstance(value, bool),
        f"{what} must return a number, got {type(value).__name__}",
    )
    expect(math.isfinite(value), f"{what} returned {value}")
    return float(value)


def _kv_case(fn: Any, L: int, H: int, D: int, T: int, B: int, dtype: Any) -> None:
    from kvlib.memory import kv_cache_bytes as reference

    want = reference(L, H, D, T, B, dtype)
    what = (
        f"kv_cache_bytes(num_layers={L}, num_kv_heads={H}, head_dim={D}, seq_len={T}, batch={B}, "
        f"dtype={dtype!r})"
    )
    got = _as_number(call(fn, L, H, D, T, B, dtype, what="kv_cache_bytes"), what)
    if got == want:
        return
    b = _bpe(dtype)
    wrong = [
        (want / 2, "the factor 2 is missing: the cache stores keys AND values"),
        (want * 2, "the factor 2 is counted twice, or a 16-bit dtype (fp16/bf16) counted as 4 bytes"),
        (want / b * 8 * b, "bits per element instead of bytes: fp16 is 2 bytes, not 16"),
        (
            want / b * 4,
            "the bytes per element ignore dtype (always 4, fp32): fp16/bf16 are 2 bytes, int8 is 1",
        ),
        (want / b * 2, "the bytes per element ignore dtype (always 2): fp32 is 4 bytes, int8 is 1"),
        (want / b, "the bytes per element are missing: multiply the element count by the dtype's size"),
        (want / B, "batch is missing: every sequence of the batch has its own keys and values"),
        (want / L, "num_layers is missing: every layer caches its own keys and values"),
        (want / H, "num_kv_heads is missing: one token's keys in one layer are num_kv_heads * head_dim wide"),
        (want / GiB, "the result must be in bytes, not GiB"),
        (want / 1e9, "the result must be in bytes, not GB"),
    ]
    # Several mistakes can give the same number on one input (num_layers == num_kv_heads): name them all.
    matching = [message for value, message in wrong if math.isclose(got, value, rel_tol=1e-9)]
    if matching:
        raise CheckFailed(f"{what} returned {got:.6g}, expected {want}: {'; or '.join(matching)}")
    raise CheckFailed(
        f"{what} returned {got:.6g}, expected {want} = 2 * layers * kv_heads * head_dim * seq_len * "
        "batch * bytes_per_element"
    )


def kv_bytes_visible(fn: Any) -> None:
    _kv_case(fn, 32, 32, 128, 4096, 1, torch.float16)  # Llama-2-7B, one 4096-token sequence: 2 GiB
    _kv_case(fn, 2, 4, 8, 16, 1, "fp32")
    print("visible tests passed")


def kv_bytes_hidden(fn: Any) -> None:
    from kvlib.memory import MODEL_CONFIGS

    cases = [
        (3, 5, 7, 11, 13, torch.float32),
        (3, 5, 7, 11, 13, torch.bfloat16),
        (3, 5, 7, 11, 13, "int8"),
        (6, 2, 48, 100, 3, "bf16"),
        (6, 2, 48, 100, 3, "fp16"),
        (1, 1, 1, 1, 1, "fp32"),
        (12, 12, 64, 1024, 8, torch.float16),
        (80, 8, 128, 0, 4, torch.float16),
    ]
    for shape in MODEL_CONFIGS.values():
        cases.append((shape.num_layers, shape.num_kv_heads, shape.head_dim, 2048, 3, torch.bfloat16))
    for case in cases:
        _kv_case(fn, *case)
    print("hidden tests passed")


# --------------------------------------------------------------------------------------------
# Exercise 2: measure the bytes a cache object holds
# --------------------------------------------------------------------------------------------


class _Holder:
    """A cache-like object with attributes, nested lists and a dict (like real caches have)."""

    def __init__(self, **attrs: Any) -> None:
        self.__dict__.update(attrs)


def _cache_cases(seed: int) -> list[tuple[str, Any, dict[str, Any]]]:
    """(description, cache object, facts for diagnosis) for a variety of layouts and dtypes."""
    from transformers import DynamicCache

    from kvlib.cache.dense import NaiveKVCache
    from kvlib.cache.static import StaticKVCache

    gen = torch.Generator().manual_seed(seed)
    cases: list[tuple[str, Any, dict[str, Any]]] = []

    naive = NaiveKVCache(3)
    for n_new in (5, 1):  # prefill 5 tokens, then decode one
        for layer in range(3):
            naive.update(
                layer, torch.randn(2, 4, n_new, 8, generator=gen), torch.randn(2, 4, n_new, 8, generator=gen)
            )
    cases.append(("a NaiveKVCache (3 layers, fp32)", naive, {}))

    half = NaiveKVCache(2)
    for layer in range(2):
        k = torch.randn(1, 2, 7, 16, generator=gen).half()
        half.update(layer, k, torch.randn(1, 2, 7, 16, generator=gen).half())
    cases.append(("a NaiveKVCache holding fp16 tensors", half, {}))

    dyn = DynamicCache()
    for layer in range(2):
        dyn.update(torch.randn(1, 3, 6, 4, generator=gen), torch.randn(1, 3, 6, 4, generator=gen), layer)
    cases.append(("a transformers DynamicCache (keys in cache.layers[i].keys)", dyn, {}))

    static = StaticKVCache(2, 1, 2, 8, max_seq_len=32, dtype=torch.bfloat16)
    for layer in range(2):
        static.update(layer, torch.randn(1, 2, 3, 8, generator=gen), torch.randn(1, 2, 3, 8, generator=gen))
    cases.append(("a StaticKVCache (bf16, 32 slots preallocated, 3 used)", static, {}))

    k, v = torch.randn(1, 2, 4, 8, generator=gen), torch.randn(1, 2, 4, 8, generator=gen)
    cases.append(
        ("a list of (k, v) pairs that stores the same tensors twice", [(k, v), (k, v)], {"shared": True})
    )

    buffer = torch.zeros(1, 2, 64, 8)
    view = _Holder(
        keys={"0": buffer[:, :, :5]}, values={"0": buffer[:, :, 5:10]}, note="two views of one buffer"
    )
    cases.append(
        ("an object whose keys and values are views into one preallocated buffer", view, {"views": True})
    )
    return cases


def _reference_bytes(obj: Any) -> int:
    from kvlib.memory import cache_nbytes

    return cache_nbytes(obj)


def _tensors(obj: Any) -> list[torch.Tensor]:
    from kvlib.memory import iter_tensors

    return list(iter_tensors(obj))


def _cache_bytes_case(fn: Any, description: str, cache: Any, facts: dict[str, Any]) -> None:
    want = _reference_bytes(cache)
    what = f"cache_bytes on {description}"
    got = _as_number(call(fn, cache, what="cache_bytes"), what)
    if got == want:
        return
    tensors = _tensors(cache)
    numel = sum(t.numel() for t in tensors)
    logical = sum(t.numel() * t.element_size() for t in tensors)
    unique_logical = sum(t.numel() * t.element_size() for t in {id(t): t for t in tensors}.values())
    hints = []
    if got == numel or got == sum(t.numel() for t in {id(t): t for t in tensors}.values()):
        hints.append("you counted elements, not bytes: multiply by t.element_size()")
    if facts.get("shared") and got > want:
        hints.append(
            "the same tensor was counted twice: count each storage once "
            "(key on t.untyped_storage().data_ptr())"
        )
    if facts.get("views") and got in (logical, unique_logical):
        hints.append(
            "views keep their whole buffer alive: count the storage (t.untyped_storage().nbytes()), once"
        )
    if got * 2 == want:
        hints.append("only half the bytes: did you count only the keys (or only the values)?")
    if got == sys.getsizeof(cache) or (got < 1024 and want > 4096):
        hints.append("that is the size of the Python object (sys.getsizeof), not of its tensors' storage")
    if got == 0:
        hints.append("no tensors found: walk lists, tuples, dicts and the attributes of objects (vars(obj))")
    if not hints and got < want:
        hints.append(
            "some tensors were missed: recurse into lists, tuples, dicts and object attributes, e.g. "
            "DynamicCache keeps them in cache.layers[i].keys / .values"
        )
    if not hints and got > want:
        hints.append("too many bytes: count each storage once")
    raise CheckFailed(f"{what} returned {int(got)} bytes, expected {want}: {'; '.join(hints)}")


def cache_bytes_visible(fn: Any) -> None:
    from kvlib.cache.dense import NaiveKVCache

    cache = NaiveKVCache(2)
    for layer in range(2):
        cache.update(layer, torch.ones(1, 2, 3, 4), torch.ones(1, 2, 3, 4))
    _cache_bytes_case(fn, "a NaiveKVCache with 2 layers of [1, 2, 3, 4] fp32 keys and values", cache, {})
    print("visible tests passed")


def cache_bytes_hidden(fn: Any) -> None:
    for description, cache, facts in _cache_cases(seed=7):
        _cache_bytes_case(fn, description, cache, facts)
    print("hidden tests passed")


# --------------------------------------------------------------------------------------------
# Exercise 3: StaticKVCache
# --------------------------------------------------------------------------------------------


def _make_static(cls: Any, L: int, B: int, H: int, D: int, max_len: int, dtype: torch.dtype) -> Any:
    return call(
        cls, L, B, H, D, max_len, dtype, what=f"StaticKVCache({L}, {B}, {H}, {D}, {max_len}, {dtype})"
    )


def _static_scenario(
    cls: Any,
    L: int,
    B: int,
    H: int,
    D: int,
    max_len: int,
    steps: list[int],
    seed: int,
    dtype: torch.dtype = torch.float32,
) -> None:
    from kvlib.cache.dense import NaiveKVCache
    from kvlib.memory import kv_cache_bytes

    gen = torch.Generator().manual_seed(seed)
    cache = _make_static(cls, L, B, H, D, max_len, dtype)
    full = kv_cache_bytes(L, H, D, max_len, B, dtype)
    held = _reference_bytes(cache)
    expect(
        held >= full,
        f"a new StaticKVCache must preallocate its buffers in __init__: it holds {held} bytes, "
        f"the full [B, H, max_seq_len, D] buffers for keys and values of {L} layers are {full} bytes",
    )
    expect(getattr(cache, "seq_len", None) == 0, "a new StaticKVCache must have seq_len == 0")
    naive = NaiveKVCache(L)
    first_ptr: dict[int, int] = {}
    total = 0
    for n_new in steps:
        for layer in range(L):
            k = torch.randn(B, H, n_new, D, generator=gen).to(dtype)
            v = torch.randn(B, H, n_new, D, generator=gen).to(dtype)
            want_k, want_v = naive.update(layer, k, v)
            out = call(cache.update, layer, k.clone(), v.clone(), what="StaticKVCache.update")
            expect(isinstance(out, (tuple, list)) and len(out) == 2, "update must return (k_all, v_all)")
            got_k, got_v = out
            where = f"after {total + n_new} tokens (max_seq_len {max_len}), layer {layer}"
            expect(isinstance(got_k, torch.Tensor), f"{where}: update must return tensors")
            if tuple(got_k.shape) != tuple(want_k.shape):
                hint = (
                    "return only the filled part, buffer[:, :, :length]"
                    if got_k.shape[2:3] == (max_len,)
                    else (
                        "each layer must track its own length "
                        "(or advance the length once per forward, not per layer)"
                        if got_k.dim() == 4 and got_k.shape[2] != want_k.shape[2]
                        else ""
                    )
                )
                raise CheckFailed(
                    f"{where}: k_all must have shape {tuple(want_k.shape)}, got "
                    f"{tuple(got_k.shape)}" + (f"; {hint}" if hint else "")
                )
            if not (torch.equal(got_k, want_k) and torch.equal(got_v, want_v)):
                raise CheckFailed(
                    f"{where}: the returned keys/values differ from a growing cache's: write the new "
                    "tokens at [length, length + T_new) of that layer's buffer and return "
                    "buffer[:, :, :length + T_new]"
                )
            ptr = got_k.data_ptr()
            if layer in first_ptr and ptr != first_ptr[layer]:
                raise CheckFailed(
                    f"{where}: the returned keys live at a new address: the cache reallocated "
                    "(torch.cat or .clone()). Copy the new tokens into the preallocated buffer "
                    "in place and return a view of it"
                )
            first_ptr.setdefault(layer, ptr)
        total += n_new
        expect(
            cache.seq_len == total,
            f"after storing {total} tokens per layer seq_len must be {total}, got {cache.seq_len}",
        )


def _expect_full_error(cls: Any) -> None:
    cache = _make_static(cls, 1, 1, 1, 2, 4, torch.float32)
    call(cache.update, 0, torch.ones(1, 1, 3, 2), torch.ones(1, 1, 3, 2), what="StaticKVCache.update")
    try:
        cache.update(0, torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 2))
    except NotImplementedError:
        raise CheckFailed("StaticKVCache.update is not implemented yet") from None
    except Exception as exc:  # noqa: BLE001 - any clear error is fine
        expect(str(exc) != "", "the error raised when the cache is full must say why (an empty message)")
        return
    raise CheckFailed(
        "writing 5 tokens into a StaticKVCache with max_seq_len=4 must raise an error that says the "
        "cache is full; it silently wrapped or dropped tokens"
    )


def static_cache_visible(cls: Any) -> None:
    _static_scenario(cls, L=2, B=1, H=2, D=4, max_len=8, steps=[3, 1, 1], seed=1)
    print("visible tests passed")


def static_cache_hidden(cls: Any) -> None:
    _static_scenario(cls, L=3, B=2, H=3, D=5, max_len=16, steps=[6, 1, 1, 3, 1], seed=2)
    _static_scenario(cls, L=1, B=1, H=1, D=2, max_len=4, steps=[1, 1, 1, 1], seed=3)  # exactly full
    _static_scenario(cls, L=2, B=1, H=2, D=4, max_len=10, steps=[2, 1], seed=4, dtype=torch.float16)
    _expect_full_error(cls)
    cache = _make_static(cls, 2, 1, 1, 2, 8, torch.float32)
    for layer in range(2):
        cache.update(layer, torch.ones(1, 1, 5, 2), torch.ones(1, 1, 5, 2))
    expect(callable(getattr(cache, "reset", None)), "StaticKVCache needs a reset() method")
    call(cache.reset, what="StaticKVCache.reset")
    expect(cache.seq_len == 0, "after reset() seq_len must be 0")
    for layer in range(2):
        k_all, _ = call(cache.update, layer, torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 2), what="update")
        expect(
            tuple(k_all.shape) == (1, 1, 2, 2),
            f"after reset() layer {layer} must start again at position 0 "
            f"(got {tuple(k_all.shape)}): reset every layer's length",
        )
    print("hidden tests passed")


# --------------------------------------------------------------------------------------------
# Exercise 4: interview numbers
# --------------------------------------------------------------------------------------------


def _interview_reference() -> dict[str, float]:
    from kvlib.memory import MODEL_CONFIGS, kv_cache_bytes

    l7, l70 = MODEL_CONFIGS["Llama-2-7B"], MODEL_CONFIGS["Llama-2-70B"]
    fp16 = torch.float16
    return {
        "llama2_7b_4096_fp16": l7.kv_bytes(4096, 1, fp16) / GiB,
        "llama2_70b_4096_fp16_if_mha": kv_cache_bytes(
            l70.num_layers, l70.num_heads, l70.head_dim, 4096, 1, fp16
        )
        / GiB,
        "llama2_70b_4096_fp16": l70.kv_bytes(4096, 1, fp16) / GiB,
        "llama2_70b_100x2048_fp16": l70.kv_bytes(2048, 100, fp16) / GiB,
        "system_prompt_1000_users_unshared": l7.kv_bytes(1000, 1000, fp16) / GiB,
        "system_prompt_1000_users_shared": l7.kv_bytes(1000, 1, fp16) / GiB,
    }


_QUESTION = {
    "llama2_7b_4096_fp16": "Llama-2-7B, one 4096-token sequence, fp16",
    "llama2_70b_4096_fp16_if_mha": "Llama-2-70B if it kept all 64 heads as KV heads, 4096 tokens, fp16",
    "llama2_70b_4096_fp16": "Llama-2-70B (8 KV heads), 4096 tokens, fp16",
    "llama2_70b_100x2048_fp16": "Llama-2-70B, 100 concurrent requests of 2048 tokens, fp16",
    "system_prompt_1000_users_unshared": "a 1000-token system prompt copied for 1000 users, Llama-2-7B, fp16",
    "system_prompt_1000_users_shared": "the same system prompt stored once and shared",
}


def _diagnose_ratio(key: str, ratio: float) -> str:
    close = lambda x: math.isclose(ratio, x, rel_tol=5e-3)
    if close(0.5):
        return "half the right value: the factor 2 for keys AND values is missing"
    if close(2.0):
        return "twice the right value: fp16 is 2 bytes per element (or the factor 2 was counted twice)"
    if close(8.0) and "70b" in key and "mha" not in key:
        return (
            "8x too large: Llama-2-70B uses grouped-query attention, its cache width is 8 KV heads * 128 = "
            "1024, not the model dimension 8192 (64 query heads)"
        )
    if close(1 / 8) and "mha" in key:
        return "8x too small: this question asks about all 64 heads being KV heads (no GQA), width 8192"
    if close(1e9 / GiB) or close(GiB / 1e9):
        return "off by 7.4%: answer in GiB (2**30 bytes), not GB (10**9 bytes)"
    if close(1 / 1000) and "unshared" in key:
        return "1000x too small: without sharing every one of the 1000 users holds its own copy"
    if close(1000) and key.endswith("_shared"):
        return "1000x too large: shared, the prompt's keys and values are stored once"
    if close(1 / 100) and "100x" in key:
        return "100x too small: each of the 100 requests has its own cache"
    if close(1024) or close(1 / 1024):
        return "off by 1024: give GiB (divide bytes by 2**30)"
    return "recompute 2 * layers * kv_heads * head_dim * tokens * batch * bytes, in GiB"


def interview_visible(fn: Any) -> None:
    got = call(fn, what="interview_answers")
    expect(isinstance(got, dict), f"interview_answers must return a dict, got {type(got).__name__}")
    want = _interview_reference()
    missing = sorted(set(want) - set(got))
    expect(not missing, f"interview_answers is missing the keys {missing}")
    _check_answer(got, want, "llama2_7b_4096_fp16")
    print("visible tests passed")


def _check_answer(got: dict[str, Any], want: dict[str, float], key: str) -> None:
    value = _as_number(got[key], f"the answer {key!r}")
    if math.isclose(value, want[key], rel_tol=5e-3):
        return
    ratio = value / want[key] if want[key] else float("inf")
    raise CheckFailed(
        f"{key} ({_QUESTION[key]}): you answered {value:.4g} GiB; {_diagnose_ratio(key, ratio)}"
    )


def interview_hidden(fn: Any) -> None:
    got = call(fn, what="interview_answers")
    expect(isinstance(got, dict), f"interview_answers must return a dict, got {type(got).__name__}")
    want = _interview_reference()
    missing = sorted(set(want) - set(got))
    expect(not missing, f"interview_answers is missing the keys {missing}")
    for key in want:
        _check_answer(got, want, key)
    print("hidden tests passed")


# --------------------------------------------------------------------------------------------
# Exercise 5: find the error
# --------------------------------------------------------------------------------------------


def _find_errors_answers(fn: Any) -> dict[str, Any]:
    got = call(fn, what="find_the_errors")
    expect(isinstance(got, dict), f"find_the_errors must return a dict, got {type(got).__name__}")
    keys = [
        "claim_a_is_correct",
        "claim_a_true_gib",
        "claim_a_mistake",
        "claim_b_is_correct",
        "claim_b_memory_exponent",
        "claim_b_attention_scores_exponent",
    ]
    missing = [k for k in keys if k not in got]
    expect(not missing, f"find_the_errors is missing the keys {missing}")
    expect(
        isinstance(got["claim_a_is_correct"], bool) and isinstance(got["claim_b_is_correct"], bool),
        "claim_a_is_correct and claim_b_is_correct must be True or False",
    )
    expect(
        got["claim_a_mistake"] in ("a", "b", "c", "d"), "claim_a_mistake must be one of 'a', 'b', 'c', 'd'"
    )
    return got


def find_errors_visible(fn: Any) -> None:
    _find_errors_answers(fn)
    print("visible tests passed")


def find_errors_hidden(fn: Any) -> None:
    from kvlib.memory import MODEL_CONFIGS

    got = _find_errors_answers(fn)
    true_gib = MODEL_CONFIGS["Llama-2-7B"].kv_bytes(4096, 1, torch.float16) / GiB
    expect(
        got["claim_a_is_correct"] is False,
        "claim A is wrong: recompute Llama-2-7B at 4096 tokens in fp16 "
        "with the formula; the table is off by a factor",
    )
    value = _as_number(got["claim_a_true_gib"], "claim_a_true_gib")
    if not math.isclose(value, true_gib, rel_tol=5e-3):
        ratio = value / true_gib
        raise CheckFailed(f"claim_a_true_gib: you answered {value:.4g} GiB; " + _diagnose_ratio("a", ratio))
    expect(
        got["claim_a_mistake"] == "a",
        "claim_a_mistake: the table's 1 GB is exactly half of 2 GiB "
        "(give or take GB vs GiB); which factor of 2 did it drop?",
    )
    expect(
        got["claim_b_is_correct"] is False,
        "claim B is wrong: the cache adds the same number of bytes for "
        "every token, so its memory grows linearly with the sequence length",
    )
    mem = _as_number(got["claim_b_memory_exponent"], "claim_b_memory_exponent")
    expect(
        mem == 1,
        f"claim_b_memory_exponent: KV memory grows like seq_len**1 (linear), you answered {mem:g}; "
        "a quadratic term is attention compute, not cache memory",
    )
    comp = _as_number(got["claim_b_attention_scores_exponent"], "claim_b_attention_scores_exponent")
    expect(
        comp != 3,
        "claim_b_attention_scores_exponent: n**3 is the total over a whole uncached generation of n "
        "tokens (n forward passes); the question asks for one forward pass over n tokens",
    )
    expect(
        comp == 2,
        f"claim_b_attention_scores_exponent: one forward pass over n tokens computes n x n "
        f"attention scores, so it grows like n**2; you answered {comp:g}",
    )
    print("hidden tests passed")
