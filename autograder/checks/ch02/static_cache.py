"""Exercise `ex3_static_cache`: a preallocated KV cache, `StaticKVCache`.

Every sentence of the docstring is a check: buffers allocated in __init__ in the requested dtype,
new tokens copied in place, views returned (no copy, no reallocation), one length per layer,
`seq_len` = layer 0's length even between layer updates, a clear error when the tokens do not fit
that leaves the cache as it was, `reset()` keeping the buffers; plus inputs never mutated or kept,
two instances independent, batch rows distinct, lengths past the visible ones.
"""

from __future__ import annotations

from typing import Any

import torch

from ..common import CheckFailed, call, expect
from ..delegation import graded
from ..fixtures import generator, randn
from ..properties import assert_dtype, assert_unchanged, call_pure, interleaved, snapshot
from .cache_bytes import reference_bytes

REFERENCES = ("kvlib.cache.static.StaticKVCache", "kvlib.cache.static")
_TORCH_SHAPE_ERRORS = ("expanded size", "must match the size", "shape mismatch", "size of tensor a")


def make(cls: Any, L: int, B: int, H: int, D: int, max_len: int, dtype: torch.dtype = torch.float32) -> Any:
    return call(
        cls, L, B, H, D, max_len, dtype, what=f"StaticKVCache({L}, {B}, {H}, {D}, {max_len}, {dtype})"
    )


def _seq_len(cache: Any) -> Any:
    return call(lambda: cache.seq_len, what="StaticKVCache.seq_len")


def _update(cache: Any, layer: int, k: torch.Tensor, v: torch.Tensor, where: str) -> tuple[torch.Tensor, ...]:
    out = call_pure(cache.update, layer, k, v, what="StaticKVCache.update")
    expect(
        isinstance(out, (tuple, list)) and len(out) == 2,
        f"{where}: update must return (k_all, v_all), got {type(out).__name__}",
    )
    expect(
        all(isinstance(t, torch.Tensor) for t in out),
        f"{where}: update must return two tensors (k_all, v_all)",
    )
    return tuple(out)


def _compare(got: torch.Tensor, want: torch.Tensor, max_len: int, where: str, name: str) -> None:
    if tuple(got.shape) != tuple(want.shape):
        hint = ""
        if got.dim() == 4 and got.shape[2] == max_len != want.shape[2]:
            hint = "return only the filled part, buffer[:, :, :length]"
        elif got.dim() == 4 and got.shape[2] != want.shape[2]:
            hint = (
                "each layer must track its own length (or advance the length once per forward, not per layer)"
            )
        raise CheckFailed(
            f"{where}: {name} must have shape {tuple(want.shape)}, got {tuple(got.shape)}"
            + (f"; {hint}" if hint else "")
        )
    assert_dtype(
        got, want.dtype, f"{where}: {name}",
        hint="a cache created with dtype=... must allocate its buffers in that dtype "
        "(torch.zeros(..., dtype=dtype))",
    )  # fmt: skip
    if torch.equal(got, want):
        return
    if want.shape[0] > 1 and torch.equal(got[:1], want[:1]):
        raise CheckFailed(
            f"{where}: {name} is right for batch row 0 only: every sequence of the batch has its "
            f"own keys, copy "
            "all of them (buffer[:, :, start:end] = k), not k[0] or a broadcast of one row"
        )
    raise CheckFailed(
        f"{where}: the returned {name} differ from a growing cache's: write the new tokens at "
        "[length, length + T_new) of that layer's buffer and return buffer[:, :, :length + T_new]"
    )


def _allocation_hint(held: int, full: int, batch: int) -> str:
    """The likely cause of a preallocation that is too small."""
    if held == 0:
        return (
            ": no tensor is reachable from the object; keep the buffers on self, created in __init__ "
            "(self.keys = [...]), not in class attributes or module-level lists"
        )
    if batch > 1 and held * batch == full:
        return (
            f": that is the size for batch 1; allocate [batch={batch}, num_kv_heads, max_seq_len, head_dim]"
        )
    if held * 2 == full:
        return ": half of it: each layer needs a key buffer AND a separate value buffer"
    return ""


def scenario(
    cls: Any, L: int, B: int, H: int, D: int, max_len: int, steps: list[int], seed: int,
    dtype: torch.dtype = torch.float32,
) -> None:  # fmt: skip
    from kvlib.memory import kv_cache_bytes

    gen = generator(seed)
    cache = make(cls, L, B, H, D, max_len, dtype)
    full = kv_cache_bytes(L, H, D, max_len, B, dtype)
    held = reference_bytes(cache)
    if held < full:
        raise CheckFailed(
            f"a new StaticKVCache must preallocate its buffers in __init__: it holds {held} bytes, the full "
            f"[B, H, max_seq_len, D] buffers for keys and values of {L} layers are {full} bytes"
            + _allocation_hint(held, full, B)
        )
    expect(_seq_len(cache) == 0, f"a new StaticKVCache must have seq_len == 0, got {_seq_len(cache)!r}")
    stored: list[list[torch.Tensor]] = [[torch.zeros(B, H, 0, D, dtype=dtype)] * 2 for _ in range(L)]
    storage: dict[tuple[int, int], tuple[int, int]] = {}
    first: list[Any] = []
    total = 0
    for n_new in steps:
        for layer in range(L):
            k, v = randn(gen, B, H, n_new, D, dtype=dtype), randn(gen, B, H, n_new, D, dtype=dtype)
            where = f"storing {n_new} token(s) after {total} (max_seq_len {max_len}, batch {B}, "
            f"{dtype}), layer {layer}"
            got = _update(cache, layer, k, v, where)
            stored[layer] = [torch.cat([stored[layer][0], k], dim=2), torch.cat([stored[layer][1], v], dim=2)]
            for i, name in enumerate(("k_all", "v_all")):
                _compare(got[i], stored[layer][i], max_len, where, name)
                where_in_memory = (got[i].untyped_storage().data_ptr(), got[i].data_ptr())
                if storage.setdefault((layer, i), where_in_memory) != where_in_memory:
                    raise CheckFailed(
                        f"{where}: the returned {name} is not a view of the layer's preallocated "
                        f"buffer (it lives "
                        "at a new address: the cache reallocated, or returned a copy made by "
                        "torch.cat, .clone() "
                        "or .contiguous()). Copy the new tokens into the buffer in place and return "
                        "buffer[:, :, :length]"
                    )
            k.zero_(), v.zero_()  # the caller reuses its tensors: the cache must have copied them
            if not first:
                first = [got, snapshot(got)]
            now = _seq_len(cache)
            expect(
                now == total + n_new,
                f"{where}: seq_len must be the number of tokens stored in layer 0, {total + n_new}, "
                f"also between layer updates; got {now!r}"
                + (
                    " (read layer 0's own length, do not count updates or use the last layer)"
                    if layer < L - 1
                    else ""
                ),
            )
        total += n_new
    assert_unchanged(
        first[0], first[1], "the keys/values returned by the first update",
        "later updates overwrote the first tokens: new tokens go after them, at [length, length + T_new)",
    )  # fmt: skip


def overflow(cls: Any, dtype: torch.dtype = torch.float32) -> None:
    """Tokens that do not fit raise a clear error, and the cache is left as it was."""
    gen = generator(11)
    cache = make(cls, 2, 2, 1, 2, 6, dtype)
    kept = [randn(gen, 2, 1, 4, 2, dtype=dtype) for _ in range(2)]
    for layer in range(2):
        _update(cache, layer, kept[layer], kept[layer], "a prefill of 4 tokens (max_seq_len 6)")
    extra = randn(gen, 2, 1, 3, 2, dtype=dtype)
    try:
        out = cache.update(0, extra, extra)
    except NotImplementedError:
        raise CheckFailed(
            "StaticKVCache.update is not implemented yet (it raised NotImplementedError)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any clear error is fine
        text = str(exc)
        expect(
            text.strip() != "",
            "the error raised when the tokens do not fit must say why (its message is empty)",
        )
        expect(
            not any(s in text.lower() for s in _TORCH_SHAPE_ERRORS),
            f"storing 3 tokens after 4 with max_seq_len=6 failed only inside torch ({type(exc).__name__}: "
            f"{text[:80]}): check length + T_new > max_seq_len yourself and raise an error saying "
            f"the cache is full",
        )
    else:
        shape = (
            tuple(out[0].shape)
            if isinstance(out, (tuple, list)) and isinstance(out[0], torch.Tensor)
            else out
        )
        raise CheckFailed(
            "storing 3 tokens after 4 in a StaticKVCache with max_seq_len=6 must raise an error "
            "that says the "
            f"cache is full; it silently dropped or wrapped tokens (update returned {shape})"
        )
    expect(
        _seq_len(cache) == 4,
        f"after the update that did not fit, seq_len must still be 4, got {_seq_len(cache)!r}: the "
        f"failed update "
        "changed the cache; check that the tokens fit before writing anything or advancing the length",
    )
    last = randn(gen, 2, 1, 2, 2, dtype=dtype)  # exactly fills the cache
    for layer in range(2):
        got = _update(
            cache, layer, last, last, f"filling the last 2 slots after a refused update, layer {layer}"
        )
        want = torch.cat([kept[layer], last], dim=2)
        if tuple(got[0].shape) != tuple(want.shape) or not torch.equal(got[0], want):
            raise CheckFailed(
                f"after a refused update, filling the last 2 of 6 slots of layer {layer} gave keys of shape "
                f"{tuple(got[0].shape)} (expected {tuple(want.shape)}, the 4 old tokens then the 2 "
                f"new): the failed "
                "update changed the cache; check that the tokens fit before writing anything or "
                "advancing the length"
            )


def reset_keeps_buffers(cls: Any) -> None:
    gen = generator(5)
    cache = make(cls, 2, 1, 1, 2, 8)
    before = []
    for layer in range(2):
        before.append(
            _update(cache, layer, randn(gen, 1, 1, 5, 2), randn(gen, 1, 1, 5, 2), "a prefill of 5 tokens")
        )
    expect(callable(getattr(cache, "reset", None)), "StaticKVCache needs a reset() method")
    call(cache.reset, what="StaticKVCache.reset")
    expect(_seq_len(cache) == 0, f"after reset() seq_len must be 0, got {_seq_len(cache)!r}")
    for layer in range(2):
        k = randn(gen, 1, 1, 2, 2)
        k_all, _ = _update(cache, layer, k, k, f"the first update after reset(), layer {layer}")
        expect(
            tuple(k_all.shape) == (1, 1, 2, 2),
            f"after reset() layer {layer} must start again at position 0 "
            f"(got {tuple(k_all.shape)}): reset every layer's length",
        )
        expect(torch.equal(k_all, k), f"after reset(), layer {layer} must return exactly the new tokens")
        expect(
            k_all.untyped_storage().data_ptr() == before[layer][0].untyped_storage().data_ptr(),
            "reset() must keep the buffers (the docstring: the buffers stay), but after reset() the "
            "keys live in "
            "a new buffer: set the lengths back to 0, do not allocate new tensors",
        )


def two_instances(cls: Any) -> None:
    expected: dict[int, list[torch.Tensor]] = {0: [], 1: []}

    def step(cache: Any, which: int, i: int) -> None:
        k = randn(generator(100 * which + i), 2, 2, 2, 4) + 10 * which
        for layer in range(2):
            got = _update(cache, layer, k, k, f"instance {which + 1}, step {i + 1}, layer {layer}")
            if layer == 0:
                expected[which].append(k)
            _compare(got[0], torch.cat(expected[which], dim=2), 8, f"step {i + 1}, layer {layer}", "k_all")

    interleaved(lambda: make(cls, 2, 2, 2, 4, 8), step, 3, "StaticKVCache")


@graded("StaticKVCache", *REFERENCES)
def static_cache_visible(cls: Any) -> None:
    scenario(cls, L=2, B=3, H=2, D=4, max_len=8, steps=[3, 1, 1], seed=1)
    overflow(cls)
    print("visible tests passed")


@graded("StaticKVCache", *REFERENCES)
def static_cache_hidden(cls: Any) -> None:
    scenario(cls, L=3, B=3, H=3, D=5, max_len=16, steps=[6, 1, 1, 3, 1], seed=2)
    scenario(cls, L=1, B=1, H=1, D=2, max_len=4, steps=[1, 1, 1, 1], seed=3)  # exactly full
    scenario(cls, L=2, B=2, H=2, D=4, max_len=10, steps=[2, 1, 7], seed=4, dtype=torch.float16)
    scenario(cls, L=2, B=2, H=1, D=4, max_len=12, steps=[5, 1], seed=6, dtype=torch.bfloat16)
    scenario(cls, L=2, B=2, H=2, D=4, max_len=300, steps=[257, 1, 33, 9], seed=8)  # past powers of two
    overflow(cls)
    overflow(cls, torch.float16)
    reset_keeps_buffers(cls)
    two_instances(cls)
    print("hidden tests passed")
