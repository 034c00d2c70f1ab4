"""Exercise `ex2_cache_bytes`: the bytes of tensor storage a cache object holds, `cache_bytes`."""

from __future__ import annotations

import sys
from typing import Any

import torch

from ..common import CheckFailed, as_int, as_number, call, expect, shown
from ..delegation import graded
from ..fixtures import generator, randn

REFERENCES = ("kvlib.memory.cache_nbytes", "kvlib.memory.iter_tensors")


class _Holder:
    """A cache-like object with attributes, nested lists and a dict (like real caches have)."""

    def __init__(self, **attrs: Any) -> None:
        self.__dict__.update(attrs)


def reference_bytes(obj: Any) -> int:
    from kvlib.memory import cache_nbytes

    return cache_nbytes(obj)


def _tensors(obj: Any) -> list[torch.Tensor]:
    from kvlib.memory import iter_tensors

    return list(iter_tensors(obj))


def _naive(layers: int, steps: list[tuple[int, ...]], gen: torch.Generator, dtype: torch.dtype) -> Any:
    from kvlib.cache.dense import NaiveKVCache

    cache = NaiveKVCache(layers)
    for shape in steps:  # prefill, then decode steps
        for layer in range(layers):
            cache.update(layer, randn(gen, *shape, dtype=dtype), randn(gen, *shape, dtype=dtype))
    return cache


def cache_cases(seed: int) -> list[tuple[str, Any]]:
    """(description, cache object) for a variety of layouts and dtypes."""
    from transformers import DynamicCache

    from kvlib.cache.static import StaticKVCache

    gen = generator(seed)
    cases: list[tuple[str, Any]] = [
        ("a NaiveKVCache (3 layers, batch 2, fp32)",
         _naive(3, [(2, 4, 5, 8), (2, 4, 1, 8)], gen, torch.float32)),
        ("a NaiveKVCache holding fp16 tensors", _naive(2, [(1, 2, 7, 16)], gen, torch.float16)),
        ("a NaiveKVCache holding int8 tensors", _naive(2, [(3, 2, 9, 4)], gen, torch.int8)),
    ]  # fmt: skip

    dyn = DynamicCache()
    for layer in range(2):
        dyn.update(randn(gen, 1, 3, 6, 4), randn(gen, 1, 3, 6, 4), layer)
    cases.append(("a transformers DynamicCache (keys in cache.layers[i].keys)", dyn))

    static = StaticKVCache(2, 1, 2, 8, max_seq_len=32, dtype=torch.bfloat16)
    for layer in range(2):
        static.update(layer, randn(gen, 1, 2, 3, 8), randn(gen, 1, 2, 3, 8))
    cases.append(("a StaticKVCache (bf16, 32 slots preallocated, 3 used)", static))

    k, v = randn(gen, 1, 2, 4, 8), randn(gen, 1, 2, 4, 8)
    cases.append(("a list of (k, v) pairs that stores the same tensors twice", [(k, v), (k, v)]))

    buffer = torch.zeros(1, 2, 64, 8)
    views = _Holder(
        keys={"0": buffer[:, :, :5]}, values={"0": buffer[:, :, 5:10]}, note="two views of one buffer"
    )
    cases.append(("an object whose keys and values are views into one preallocated buffer", views))

    wide = torch.zeros(2, 3, 40, 6, dtype=torch.float64)
    nested = _Holder(
        name="nested",
        layers=[
            {"kv": (wide[:, :, :7], wide[:, :, 7:14]), "meta": {"dtype": torch.float64, "len": 7}},
            _Holder(pair=[randn(gen, 2, 3, 7, 6, dtype=torch.bfloat16), (randn(gen, 2, 3, 7, 6),)], pos=None),
        ],
    )
    cases.append(
        (
            "an object nesting dicts, tuples, lists and objects (float64 views at two offsets, bf16, fp32)",
            nested,
        )
    )
    return cases


def _storages(tensors: list[torch.Tensor], key: str) -> dict[Any, tuple[torch.Tensor, int]]:
    out: dict[Any, tuple[torch.Tensor, int]] = {}
    for t in tensors:
        k = {"storage": t.untyped_storage().data_ptr(), "data_ptr": t.data_ptr(), "id": id(t)}[key]
        out[k] = (t, t.untyped_storage().nbytes())
    return out


def _wrong_values(cache: Any) -> list[tuple[str, int]]:
    """(hint, the number a classic wrong version returns) for `cache`."""
    tensors = _tensors(cache)
    unique = _storages(tensors, "storage").values()
    by_tensor = {id(t): t for t in tensors}.values()
    return [
        ("you counted elements, not bytes: multiply by t.element_size() (or use the storage's nbytes())",
         sum(t.numel() for t in by_tensor)),
        ("you counted elements, not bytes: multiply by t.element_size() (or use the storage's nbytes())",
         sum(t.numel() for t in tensors)),
        ("an untyped storage's nbytes() (and its size()) is already in bytes: do not multiply by "
        "element_size()",
         sum(n * t.element_size() for t, n in unique)),
        ("you assumed 4 bytes per element (fp32): use t.element_size() or the storage's nbytes(), "
        "the cache may "
         "hold fp16, bf16, int8 or float64", sum(n // t.element_size() * 4 for t, n in unique)),
        ("views keep their whole buffer alive: count the storage (t.untyped_storage().nbytes()), once",
         sum(t.numel() * t.element_size() for t in by_tensor)),
        ("the same tensor was counted twice: count each storage once (key on t.untyped_storage().data_ptr())",
         sum(t.numel() * t.element_size() for t in tensors)),
        ("views of one buffer at different offsets were counted once each: key on "
        "t.untyped_storage().data_ptr(), "
         "not t.data_ptr() (a view's data_ptr() points at its first element)",
         sum(n for _, n in _storages(tensors, "data_ptr").values())),
        ("each tensor object was counted with its whole storage: count each storage once, keyed on "
         "t.untyped_storage().data_ptr(), not id(t)", sum(n for _, n in _storages(tensors, "id").values())),
        ("the same tensor was counted twice: count each storage once (key on t.untyped_storage().data_ptr())",
         sum(t.untyped_storage().nbytes() for t in tensors)),
        ("that is the size of the Python object (sys.getsizeof), not of its tensors' storage",
         sys.getsizeof(cache)),
        ("no tensors found: walk lists, tuples, dicts and the attributes of objects (vars(obj))", 0),
    ]  # fmt: skip


def _structure(obj: Any) -> list[tuple[int, torch.Tensor]]:
    return [(id(t), t.detach().clone()) for t in _tensors(obj)]


def check_case(fn: Any, description: str, cache: Any) -> int:
    want = reference_bytes(cache)
    what = f"cache_bytes on {description}"
    before = _structure(cache)
    try:
        raw = call(fn, cache, what="cache_bytes")
    except CheckFailed as exc:
        if "RecursionError" not in str(exc):
            raise
        raise CheckFailed(
            f"{what}: {exc}: the walk went round a reference cycle forever; visit each object once "
            "(keep a set of id(obj) already seen)"
        ) from None
    after = {id(t): t for t in _tensors(cache)}
    for ident, copy in before:
        now = after.get(ident)
        expect(
            now is not None
            and now.shape == copy.shape
            and now.dtype == copy.dtype
            and torch.equal(now, copy),
            f"{what}: cache_bytes changed the cache it measured (a tensor was removed, replaced or "
            f"modified): "
            "only read it; walk the containers without popping from them or assigning to them",
        )
    got = as_number(raw, what)
    if got != want:
        hints = [hint for hint, value in _wrong_values(cache) if got == value]
        if not hints and got * 2 == want:
            hints.append("only half the bytes: did you count only the keys (or only the values)?")
        if not hints and got < want:
            hints.append(
                "some tensors were missed: recurse into lists, tuples, dicts and object attributes, e.g. "
                "DynamicCache keeps them in cache.layers[i].keys / .values"
            )
        if not hints:
            hints.append("too many bytes: count each storage once")
        raise CheckFailed(
            f"{what} returned {shown(raw)} bytes, expected {want}: {'; '.join(dict.fromkeys(hints))}"
        )
    return as_int(raw, f"{what} (the right value, {want})")


@graded("cache_bytes", *REFERENCES)
def cache_bytes_visible(fn: Any) -> None:
    from kvlib.cache.dense import NaiveKVCache

    cache = NaiveKVCache(2)
    for layer in range(2):
        cache.update(layer, torch.ones(2, 2, 3, 4), torch.ones(2, 2, 3, 4))
        cache.update(layer, torch.ones(2, 2, 1, 4), torch.ones(2, 2, 1, 4))  # a decode step after the prefill
    check_case(fn, "a NaiveKVCache with 2 layers of [2, 2, 4, 4] fp32 keys and values", cache)
    buffer = torch.zeros(1, 2, 16, 4)
    check_case(
        fn, "a list holding two views of one [1, 2, 16, 4] buffer", [buffer[:, :, :3], buffer[:, :, 3:6]]
    )
    print("visible tests passed")


@graded("cache_bytes", *REFERENCES)
def cache_bytes_hidden(fn: Any) -> None:
    cases = cache_cases(seed=7)
    # the answer depends on the cache passed in, not on earlier calls (no module-level "seen" set)
    for description, cache in cases[:2]:
        what = f"cache_bytes on {description}"
        first = call(fn, cache, what="cache_bytes")
        again = call(fn, cache, what="cache_bytes")
        expect(
            as_number(again, what) == as_number(first, what),
            f"{what} returned {shown(first)} the first time and {shown(again)} on a second call "
            f"with the same "
            "cache: keep the set of seen storages local to one call (create it inside the function), not at "
            "module level",
        )
    _counts_afresh(fn)
    for description, cache in cases:
        check_case(fn, description, cache)
    check_case(fn, "an object that refers to itself (a parent link, a list holding itself)", _cyclic())
    print("hidden tests passed")


def _counts_afresh(fn: Any) -> None:
    """The same cache object, measured, grown, measured again: no answer memoised by id(cache)."""
    from kvlib.cache.dense import NaiveKVCache

    cache = NaiveKVCache(2)
    for layer in range(2):
        cache.update(layer, torch.zeros(1, 2, 4, 8), torch.zeros(1, 2, 4, 8))
    check_case(fn, "a NaiveKVCache holding 4 tokens", cache)
    for layer in range(2):
        cache.update(layer, torch.zeros(1, 2, 3, 8), torch.zeros(1, 2, 3, 8))
    what = "cache_bytes on the same NaiveKVCache after it grew to 7 tokens"
    got, want = as_number(call(fn, cache, what="cache_bytes"), what), reference_bytes(cache)
    expect(
        got == want,
        f"{what} returned {shown(got)}, expected {want}: count afresh on every call (an answer remembered "
        "by id(cache), or a cache of results, goes stale when the cache grows)",
    )


class _Node:
    """A cache-like object with a reference cycle: walking it without a visited set never ends."""

    def __init__(self) -> None:
        self.keys = torch.zeros(2, 4)
        self.parent = self
        self.children: list[Any] = []
        self.children.append(self.children)


def _cyclic() -> Any:
    return _Node()
