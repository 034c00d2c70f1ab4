"""Exercise `ex2_naive_cache`: a per-layer key/value cache that grows by concatenation."""

from __future__ import annotations

from typing import Any

import torch

from ..common import CheckFailed, as_int, call, expect, matches
from ..delegation import graded
from ..fixtures import generator, randn
from ..properties import assert_dtype, assert_unchanged, call_pure, interleaved, same_values, snapshot

# kvlib's NaiveKVCache first (the same constructor and methods), then every kvlib cache that would
# hand in a working cache: its subclass for GQA and the preallocated cache of chapter 02.
REFERENCES = (
    "kvlib.cache.dense.NaiveKVCache",
    "kvlib.cache.dense",
    "kvlib.cache.gqa.KVHeadsCache",
    "kvlib.cache.static",
)

_ALIASING = (
    "update returned a view of storage that a later update or reset() overwrote in place; return new "
    "tensors (torch.cat makes one) and never write into a tensor you handed out"
)


def _seq_len(cache: Any, what: str) -> int:
    expect(hasattr(cache, "seq_len"), f"{what} has no seq_len attribute or property")
    value = cache.seq_len
    expect(not callable(value), "seq_len must be a property or attribute (cache.seq_len), not a method")
    return as_int(value, "seq_len")


class _Cache:
    """Drives one learner cache and remembers everything it was given and returned."""

    def __init__(self, cls: Any, num_layers: int, label: str = "a new cache") -> None:
        self.cache = call(cls, num_layers, what=f"NaiveKVCache({num_layers})")
        self.num_layers = num_layers
        self.history_k: list[list[torch.Tensor]] = [[] for _ in range(num_layers)]
        self.history_v: list[list[torch.Tensor]] = [[] for _ in range(num_layers)]
        self.given: list[tuple[str, torch.Tensor, torch.Tensor]] = []  # (name, tensor passed, private copy)
        self.returned: list[tuple[Any, Any]] = []  # (result, snapshot)
        held = _seq_len(self.cache, label)
        if held != 0:
            raise CheckFailed(
                f"{label} already holds {held} tokens before any update: caches share state (the lists "
                "live in class attributes or module-level variables, so a new cache sees an older "
                "cache's tokens); create them in __init__ (self.keys = [None] * num_layers)"
            )

    def stored(self, layer: int) -> int:
        return sum(t.shape[-2] for t in self.history_k[layer])

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.given += [(f"k of update({layer})", k, k.clone()), (f"v of update({layer})", v, v.clone())]
        self.history_k[layer].append(k.clone())
        self.history_v[layer].append(v.clone())
        out = _update(self.cache, layer, k, v)
        self.returned.append((out, snapshot(out)))
        self.check_untouched()
        return out

    def check_untouched(self) -> None:
        for name, tensor, copy in self.given:
            if not same_values(tensor, copy):
                raise CheckFailed(
                    f"NaiveKVCache modified the {name} it was given earlier, in place (after update "
                    "returned): you stored the caller's tensor and then changed it (.data =, resize_, "
                    "copy_, x[...] = ...); the model still uses it. Store it, then replace it with a "
                    "new tensor (torch.cat)"
                )
        for result, copy in self.returned:
            assert_unchanged(result, copy, "a (k_all, v_all) pair that update returned earlier", _ALIASING)

    def step(self, n_new: int, B: int, H: int, D: int, gen: torch.Generator, dtype: torch.dtype) -> None:
        for layer in range(self.num_layers):
            k, v = randn(gen, B, H, n_new, D, dtype=dtype), randn(gen, B, H, n_new, D, dtype=dtype)
            k_all, v_all = self.update(layer, k, v)
            want_k, want_v = (
                torch.cat(self.history_k[layer], dim=-2),
                torch.cat(self.history_v[layer], dim=-2),
            )
            total = self.stored(layer)
            where = f"after {total} tokens, the keys returned for layer {layer}"
            others = sum(self.stored(i) for i in range(self.num_layers) if i != layer)
            _check_returned(k_all, want_k, k, want_v, where, others)
            _check_returned(v_all, want_v, v, want_k, where.replace("keys", "values"), others)
            if layer == 0:  # the model reads seq_len between the layers' updates: checked below
                between = (self.stored(0), _seq_len(self.cache, "the cache"))
        self.check_seq_len()  # first: its diagnoses (counting calls, all layers) name the commoner slips
        expect(
            between[0] == between[1],
            f"after layer 0 stored {between[0]} tokens (and before the other layers of this step), seq_len "
            f"must be {between[0]}, got {between[1]}: seq_len is layer 0's length (read self.keys[0], not "
            "the last layer or a counter advanced by another layer)",
        )
        self.check_attributes()

    def check_seq_len(self) -> None:
        total = self.stored(0)
        got_len = _seq_len(self.cache, "the cache")
        if got_len != total:
            all_layers = sum(self.stored(i) for i in range(self.num_layers))
            calls = len(self.history_k[0])
            if got_len == all_layers and self.num_layers > 1:
                msg = (
                    "seq_len counts tokens of every layer added together; count one layer's tokens (layer 0)"
                )
            elif got_len == calls:
                msg = "seq_len must count tokens (the size of the sequence axis), not calls to update"
                if got_len == self.history_k[0][0].shape[0]:
                    msg += ", nor len(tensor), which is the size of the first axis, the batch"
            elif got_len == self.history_k[0][0].shape[0]:
                msg = (
                    "len(tensor) is the size of its first axis, the batch; the tokens are on the sequence "
                    "axis: keys[0].shape[-2]"
                )
            else:
                msg = "seq_len is wrong"
            raise CheckFailed(
                f"after storing {total} tokens per layer, seq_len must be {total}, got {got_len}: {msg}"
            )

    def check_attributes(self) -> None:
        for name, history in (("keys", self.history_k), ("values", self.history_v)):
            stored = getattr(self.cache, name, None)
            expect(
                isinstance(stored, (list, tuple)) and len(stored) == self.num_layers,
                f"cache.{name} must be a list with one entry per layer ({self.num_layers}), as the docstring "
                f"says (later cells read cache.{name}[layer]); got {type(stored).__name__}"
                + (f" of length {len(stored)}" if isinstance(stored, (list, tuple)) else ""),
            )
            for layer, parts in enumerate(history):
                if not parts:
                    continue
                want = torch.cat(parts, dim=-2)
                expect(
                    isinstance(stored[layer], torch.Tensor) and matches(stored[layer], want, atol=0.0),
                    f"cache.{name}[{layer}] must hold that layer's stored {name} {tuple(want.shape)} (the "
                    f"docstring promises it; later cells read it), got "
                    + (f"shape {tuple(stored[layer].shape)}" if isinstance(stored[layer], torch.Tensor)
                       else type(stored[layer]).__name__),
                )  # fmt: skip


def _update(cache: Any, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        out = call_pure(cache.update, layer, k, v, what="NaiveKVCache.update")
    except CheckFailed as exc:
        text = str(exc)
        axis = {
            "dimension 0": "the batch axis (dim=0)",
            "dimension 1": "the head axis (dim=1)",
            "dimension 3": "the head_dim axis (dim=-1)",
        }
        for key, name in axis.items():
            if "except in dimension" in text and key in text.split("except in")[1][:14]:
                raise CheckFailed(
                    f"{text}: torch.cat ran on {name}; new tokens go on the sequence axis, dim=-2"
                ) from None
        raise
    expect(
        isinstance(out, (tuple, list)) and len(out) == 2,
        "update(layer, k, v) must return a pair (k_all, v_all)",
    )
    return out[0], out[1]


def _check_returned(
    got: Any, want: torch.Tensor, new: torch.Tensor, other: torch.Tensor, what: str, other_layers: int
) -> None:
    expect(isinstance(got, torch.Tensor), f"{what} must be a tensor, got {type(got).__name__}")
    if tuple(got.shape) != tuple(want.shape):
        B, H, T, D = want.shape
        hint = ""
        if tuple(got.shape) == tuple(new.shape):
            hint = "you returned only the new tokens; update must return everything cached for that layer"
        elif got.dim() == 4 and got.shape[1] > H:
            hint = "you concatenated on the head axis (dim=1); the sequence axis is dim=-2"
        elif got.dim() == 4 and got.shape[3] > D:
            hint = "you concatenated on the head_dim axis (dim=-1); the sequence axis is dim=-2"
        elif got.dim() == 4 and got.shape[0] > B:
            hint = "you concatenated on the batch axis (dim=0); the sequence axis is dim=-2"
        elif got.dim() == 4 and got.shape[2] == T + other_layers:
            hint = "it holds the tokens of every layer: all layers share one tensor (use the layer index)"
        elif got.dim() == 4 and got.shape[2] > T:
            hint = (
                "it holds more tokens than were given to this layer of this cache: do all layers share "
                "one tensor, or do caches share state (class attributes or module-level variables)?"
            )
        else:
            hint = "keys must be concatenated on the sequence axis, dim=-2"
        raise CheckFailed(f"{what} must have shape {tuple(want.shape)}, got {tuple(got.shape)}: {hint}")
    assert_dtype(got, want.dtype, what)
    if matches(got, want, atol=0.0):
        return
    if matches(got, other, atol=0.0):
        raise CheckFailed(f"{what} holds the values instead of the keys: return (k_all, v_all) in that order")
    raise CheckFailed(
        f"{what} has the right shape but wrong contents: append the new tokens after the "
        "old ones (torch.cat([old, new], dim=-2)), per layer"
    )


def _cache_scenario(
    cls: Any, num_layers: int, B: int, H: int, D: int, steps: list[int], seed: int, dtype=torch.float32
) -> _Cache:
    gen = generator(seed)
    driver = _Cache(cls, num_layers)
    for n_new in steps:
        driver.step(n_new, B, H, D, gen, dtype)
    return driver


def _reset_case(cls: Any, seed: int) -> None:
    """reset() forgets every layer's keys and values; the cache is then reused, with another batch size."""
    gen = generator(seed)
    driver = _Cache(cls, 2)
    driver.step(5, 1, 2, 3, gen, torch.float32)
    reset = getattr(driver.cache, "reset", None)
    expect(callable(reset), "NaiveKVCache needs a reset() method")
    call(reset, what="NaiveKVCache.reset")
    expect(_seq_len(driver.cache, "the cache") == 0, "after reset() seq_len must be 0")
    for B, n_new in ((1, 2), (2, 3)):  # the same shapes, then a new batch size: a new sequence
        for layer in range(2):
            k, v = randn(gen, B, 2, n_new, 3), randn(gen, B, 2, n_new, 3)
            try:
                k_all, v_all = _update(driver.cache, layer, k, v)
            except CheckFailed as exc:
                raise CheckFailed(
                    f"after reset(), a new sequence failed: {exc}; reset must clear the keys and values of "
                    "every layer"
                ) from None
            for name, got, new in (("keys", k_all, k), ("values", v_all, v)):
                shape = tuple(getattr(got, "shape", ()))
                expect(
                    isinstance(got, torch.Tensor) and shape == tuple(new.shape),
                    f"after reset() the next update of layer {layer} must return only the new {name} "
                    f"(shape {tuple(new.shape)}), got {name} of shape {shape}: reset must clear the "
                    f"{name} of every layer" + (", not only the keys" if name == "values" else ""),
                )
                expect(matches(got, new, atol=0.0), f"after reset() the {name} returned for layer {layer} "
                       "must be the new ones")  # fmt: skip
            driver.check_untouched()  # what update returned before reset() is not overwritten
        call(driver.cache.reset, what="NaiveKVCache.reset")
    for name in ("keys", "values"):
        stored = getattr(driver.cache, name, None)
        expect(
            isinstance(stored, (list, tuple)) and len(stored) == 2,
            f"after reset() cache.{name} must still be a list with one entry per layer",
        )


def _two_instances(cls: Any) -> None:
    """Two caches used in turn keep their own tokens (no state in class attributes or globals)."""

    def make() -> _Cache:
        return _Cache(cls, 2, label="a second new cache")

    def step(driver: _Cache, which: int, i: int) -> None:
        if i == 0:
            driver.gen = generator(40 + which)  # type: ignore[attr-defined]
        driver.step(1 + which + i, 1 + which, 2, 4, driver.gen, torch.float32)  # type: ignore[attr-defined]

    interleaved(make, step, 3, "NaiveKVCache")


@graded("NaiveKVCache", *REFERENCES)
def naive_cache_visible(cls: Any) -> None:
    _cache_scenario(cls, num_layers=2, B=1, H=2, D=4, steps=[3, 1], seed=1)
    _cache_scenario(cls, num_layers=2, B=2, H=2, D=4, steps=[4, 1, 2], seed=2)
    print("visible tests passed")


@graded("NaiveKVCache", *REFERENCES)
def naive_cache_hidden(cls: Any) -> None:
    _cache_scenario(cls, num_layers=3, B=2, H=3, D=5, steps=[4, 1, 1, 2], seed=10)
    _cache_scenario(cls, num_layers=1, B=1, H=1, D=2, steps=[1, 1, 1], seed=11)
    _two_instances(cls)  # before anything else can fail on shared state with a vaguer message
    _cache_scenario(
        cls, num_layers=2, B=3, H=2, D=4, steps=[100, 1, 1, 33, 1], seed=12
    )  # past the visible sizes
    _cache_scenario(cls, num_layers=2, B=2, H=2, D=8, steps=[3, 1, 1], seed=13, dtype=torch.float16)
    _cache_scenario(cls, num_layers=2, B=1, H=2, D=8, steps=[2, 1], seed=14, dtype=torch.bfloat16)
    _reset_case(cls, seed=15)
    print("hidden tests passed")
