"""Exercise `window_cache`: a sliding-window KV cache kept in a ring buffer.

Every update of the learner's `WindowCache` is compared, bit for bit, with the tokens the layer was given
(the kept ones oldest first, then all the new ones), on a batch of distinct rows, several layers, prompts
shorter and longer than the window, single tokens and chunks longer than the window, window 1, fp16/bf16
and non-contiguous inputs (the views a model hands over), two instances in turn and after reset(). The
ring buffer the docstring promises is checked on the object itself, without assuming attribute names:
its attributes (lists, tuples, dicts, nested objects) are walked to find, after each update, a key and a
value buffer [B, KV, window, D] in k's dtype holding token p at slot p % window (identified by content:
every token is distinct), whose storage never changes afterwards (written in place, so a cache that
concatenates and slices fails), and the object may hold no more floating-point elements than those two
buffers per layer updated so far (no hidden growing copy, no buffers allocated before a layer's first
update). An indexed write that sends two tokens to the same slot in one assignment (T_new > window) is
caught as it runs: torch leaves undefined which one wins, so it works on a CPU and breaks on a GPU. A run
on the meta device stands in for "k's device". seq_len is checked between the layers of a step (layer 0's
count) and after it. Inside a tiny GQA model (4 query heads, 2 KV heads) the learner's cache must give the
logits of kvlib's `SlidingWindowKVCache` on a stream longer than the window. A wrong result is matched
against the classic wrong caches (slot order returned, window off by one, tokens written before the read,
a long call keeping its first tokens, the first tokens kept forever, new tokens first) and named.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

# one key per block of memory (meta tensors keyed by their shared storage object): kvlib counts a
# cache's bytes with the same key
from kvlib.memory import _storage_key

from ..common import CheckFailed, as_int, assert_close, call, expect, matches
from ..delegation import graded
from ..fixtures import generator, randn, tiny_model
from ..properties import assert_dtype, assert_unchanged, call_pure, interleaved, snapshot

# kvlib's window cache has the exercise's constructor and methods; ring_order and _RingLayers are the ring
# buffer it is made of, and a SinkKVCache without sinks is the same cache.
REFERENCES = (
    "kvlib.cache.evict.SlidingWindowKVCache",
    "kvlib.cache.evict.ring_order",
    "kvlib.cache.evict.SinkKVCache",
    "kvlib.cache.evict._RingLayers",
)

_ALIASING = (
    "update returned a tensor that a later update overwrote: the result is a view of your ring buffer. "
    "Return new tensors (torch.cat makes one; buffer[:, :, slots] with a tensor of slots copies)"
)
_IN_PLACE = (
    "write the new tokens into the buffers in place (self.keys[layer][:, :, slots] = ...), never rebuild "
    "them (torch.cat then slicing allocates a new tensor at every step)"
)
_SLOTS = "the layer's p-th token (p = 0, 1, ...) goes to slot p % window"


@dataclass(frozen=True)
class _Config:
    num_layers: int
    window: int
    B: int
    KV: int
    D: int
    dtype: torch.dtype = torch.float32
    transposed: bool = False  # inputs as views k.transpose(1, 2) of [B, T, KV, D], as a model makes them

    def label(self) -> str:
        dtype = str(self.dtype).replace("torch.", "")
        return (
            f"WindowCache({self.num_layers}, window={self.window}) with {dtype} k, v of shape "
            f"[B={self.B}, KV={self.KV}, T_new, D={self.D}]"
        )

    @property
    def buffer_elements(self) -> int:
        return self.B * self.KV * self.window * self.D


def _make(cls: Any, cfg: _Config) -> Any:
    return call(cls, cfg.num_layers, cfg.window, what=f"WindowCache({cfg.num_layers}, {cfg.window})")


def _seq_len(cache: Any) -> int:
    expect(hasattr(cache, "seq_len"), "WindowCache has no seq_len property")
    value = call(lambda: cache.seq_len, what="WindowCache.seq_len")
    expect(not callable(value), "seq_len must be a property (cache.seq_len), not a method: add @property")
    return as_int(value, "seq_len")


# --- writes that send two values to one place in one assignment --------------------------------------

_T = torch.Tensor
_SETITEM = frozenset({_T.__setitem__})
_INDEX_PUT = frozenset({_T.index_put_, _T.index_put, torch.index_put, torch.index_put_})
_INDEX_COPY = frozenset({_T.index_copy_, _T.index_copy, torch.index_copy})
_SCATTER = frozenset({_T.scatter_, _T.scatter, torch.scatter})


def _as_index(x: Any) -> Tensor | None:
    """An advanced index component as a long tensor (None for a slice, an int, a bool mask, meta)."""
    if isinstance(x, (list, tuple)):
        try:
            x = torch.tensor(x)
        except (TypeError, ValueError, RuntimeError):
            return None
    if not isinstance(x, Tensor) or x.device.type == "meta" or x.dtype == torch.bool:
        return None
    if x.is_floating_point() or x.is_complex():
        return None
    return x.detach().to("cpu", torch.long)


def _repeats(components: list[tuple[int, Tensor]], shape: tuple[int, ...]) -> bool:
    """True when the advanced indices (dim, index) address one element twice."""
    if not components:
        return False
    parts = [idx % shape[dim] if shape[dim] else idx for dim, idx in components]
    parts = torch.broadcast_tensors(*parts)
    rows = torch.stack([p.reshape(-1) for p in parts], dim=1)  # (N, number of advanced dims)
    return rows.shape[0] > 1 and torch.unique(rows, dim=0).shape[0] < rows.shape[0]


def _setitem_components(target: Tensor, index: Any) -> list[tuple[int, Tensor]] | None:
    items = index if isinstance(index, tuple) else (index,)
    used = sum(
        (x.dim() if isinstance(x, Tensor) and x.dtype == torch.bool else 1)
        for x in items
        if x is not None and x is not Ellipsis
    )
    dim, out = 0, []
    for x in items:
        if x is None:
            continue
        if x is Ellipsis:
            dim += target.dim() - used
            continue
        if isinstance(x, Tensor) and x.dtype == torch.bool:
            return None  # a mask names each element at most once; mixed with others: not worth guessing
        idx = None if isinstance(x, (int, slice)) else _as_index(x)
        if idx is not None:
            if dim >= target.dim():
                return None
            out.append((dim, idx))
        dim += 1
    return out


def _duplicate_write(func: Any, args: tuple, kwargs: dict) -> bool:
    if func in _SETITEM:
        target, index = args[0], args[1]
        components = _setitem_components(target, index)
        return bool(components) and _repeats(components, tuple(target.shape))
    if func in _INDEX_PUT:
        target = args[0]
        indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
        accumulate = args[3] if len(args) > 3 else kwargs.get("accumulate", False)
        if accumulate:
            return False
        components = [(d, _as_index(t)) for d, t in enumerate(indices) if t is not None]
        if any(idx is None for _, idx in components):
            return False
        return _repeats(components, tuple(target.shape))  # type: ignore[arg-type]
    if func in _INDEX_COPY:
        target, dim = args[0], args[1] if len(args) > 1 else kwargs.get("dim")
        index = _as_index(args[2] if len(args) > 2 else kwargs.get("index"))
        if index is None or not isinstance(dim, int):
            return False
        return _repeats([(dim % max(target.dim(), 1), index.reshape(-1))], tuple(target.shape))
    if func in _SCATTER:
        if len(args) > 4 or kwargs.get("reduce") is not None:
            return False
        target, dim = args[0], args[1] if len(args) > 1 else kwargs.get("dim")
        index = _as_index(args[2] if len(args) > 2 else kwargs.get("index"))
        src = args[3] if len(args) > 3 else kwargs.get("src", kwargs.get("value"))
        if index is None or not isinstance(src, Tensor) or not isinstance(dim, int) or index.dim() == 0:
            return False
        dim = dim % index.dim()
        n = index.shape[dim]
        if n < 2:
            return False
        ordered = (index % max(target.shape[dim], 1)).sort(dim=dim).values
        return bool((ordered.narrow(dim, 1, n - 1) == ordered.narrow(dim, 0, n - 1)).any())
    return False


class _DuplicateWrites(TorchFunctionMode):
    """Notes an indexed write (item assignment, index_put, index_copy, scatter) that names one element
    twice: torch does not define which value lands, so a result that looks right on a CPU is not."""

    def __init__(self) -> None:
        super().__init__()
        self.found = False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not self.found:
            try:
                self.found = _duplicate_write(func, args, kwargs)
            except Exception:  # noqa: BLE001 - an index this inspection cannot read: the write decides
                pass
        return func(*args, **kwargs)


_DUPLICATE_MESSAGE = (
    "update wrote several tokens into the same slot in one indexed assignment (with T_new > window, "
    "tokens p and p + window both map to slot p % window): torch does not define which of the repeated "
    "writes wins (a CPU happens to keep the last, a GPU may keep any), so the buffer may keep an evicted "
    "token. Write only the last min(T_new, window) new tokens: they fill distinct slots"
)


# --- the classic wrong caches, simulated from the tokens a layer was given ----------------------------


@dataclass(frozen=True)
class _Rule:
    delta: int = 0  # keeps window + delta tokens
    slot_order: bool = False  # kept tokens read in slot order 0, 1, ... instead of oldest first
    write_first: bool = False  # new tokens written, then the ring returned (oldest first)
    first_of_call: bool = False  # a call longer than the window keeps its first `window` tokens
    keep_first: bool = False  # only the stream's first `window` tokens are ever kept
    new_first: bool = False  # the new tokens before the kept ones
    truncate: bool = False  # a call longer than the window cut to its last `window` tokens first


_WRONG_RULES: tuple[tuple[str, _Rule], ...] = (
    (
        "the kept tokens came back in slot order (slot 0, 1, ...), not oldest first: once the ring has "
        "wrapped, the oldest kept token sits in slot seen % window; read the slots of tokens "
        "seen - kept .. seen - 1, each at p % window, in that order",
        _Rule(slot_order=True),
    ),
    (
        "the new tokens were written into the ring before it was read, so the result holds the last "
        "window tokens only: return the kept tokens (read BEFORE writing) followed by ALL T_new new ones",
        _Rule(write_first=True),
    ),
    (
        "a call longer than the window was cut to its last window tokens: it must return ALL its new "
        "tokens (they attend over all of themselves); only what the cache keeps afterwards is cut",
        _Rule(truncate=True),
    ),
    (
        "a call longer than the window kept its FIRST window tokens: keep the LAST window tokens the layer "
        "has seen (only the last min(T_new, window) new tokens can survive)",
        _Rule(first_of_call=True),
    ),
    (
        "the cache keeps the first window tokens and never evicts them: the newest tokens must replace "
        "the oldest (token p overwrites slot p % window)",
        _Rule(keep_first=True),
    ),
    (
        "the new tokens must come after the kept ones: return cat([kept, new]) on dim=-2, oldest first",
        _Rule(new_first=True),
    ),
    (
        "the cache keeps window - 1 tokens (off by one): it must keep the last `window` tokens, "
        "min(seen, window) of them",
        _Rule(delta=-1),
    ),
    (
        "the cache keeps window + 1 tokens (off by one): it must keep the last `window` tokens, "
        "min(seen, window) of them",
        _Rule(delta=1),
    ),
)


def _simulate(calls: list[Tensor], window: int, rule: _Rule) -> tuple[Tensor, Tensor]:
    """What a cache following `rule` returns for the last of `calls` (one tensor per update of a layer),
    and its ring buffer afterwards."""
    W = window + rule.delta
    if W < 1:
        raise ValueError("no ring")
    ring: Tensor | None = None
    seen = 0
    out = calls[0]
    for x in calls:
        if rule.truncate:
            x = x[:, :, -W:]
        B, KV, T, D = x.shape
        if ring is None:
            ring = x.new_zeros(B, KV, W, D)
        kept = min(seen, W)
        order = torch.arange(kept) if rule.slot_order else torch.arange(seen - kept, seen) % W
        old = ring[:, :, order]
        if rule.keep_first:
            for t in range(T):
                if seen + t < W:
                    ring[:, :, seen + t] = x[:, :, t]
        else:
            n = min(T, W)
            start = seen if rule.first_of_call else seen + T - n
            part = x[:, :, :n] if rule.first_of_call else x[:, :, T - n :]
            ring[:, :, torch.arange(start, start + n) % W] = part
        if rule.write_first:
            after = seen + T
            out = ring[:, :, torch.arange(after - min(after, W), after) % W]
        elif rule.new_first:
            out = torch.cat([x, old], dim=2)
        else:
            out = torch.cat([old, x], dim=2)
        seen += T
    assert ring is not None
    return out, ring


def _diagnose(got: Tensor, calls: list[Tensor], window: int) -> str | None:
    for message, rule in _WRONG_RULES:
        try:
            wrong, _ = _simulate(calls, window, rule)
        except Exception:  # noqa: BLE001 - a rule that cannot run on these sizes matches nothing
            continue
        if matches(got, wrong, atol=0.0):
            return message
    return None


def _expected(calls: list[Tensor], window: int) -> Tensor:
    """The kept tokens oldest first, then all the new ones: computed from the whole history."""
    history = torch.cat(calls[:-1], dim=2) if len(calls) > 1 else calls[0][:, :, :0]
    seen = history.shape[2]
    return torch.cat([history[:, :, seen - min(seen, window) :], calls[-1]], dim=2)


# --- what the object holds --------------------------------------------------------------------------


def _held(cache: Any) -> list[Tensor]:
    from kvlib.memory import iter_tensors

    try:
        return list(iter_tensors(cache))
    except ValueError as exc:
        raise CheckFailed(f"your WindowCache nests its tensors too deeply to inspect: {exc}") from None


def _float_elements(tensors: list[Tensor]) -> int:
    """Floating-point elements held, each storage counted once (views of one buffer share it)."""
    storages: dict[tuple[str, int], int] = {}
    for t in tensors:
        if t.is_floating_point():
            storages[_storage_key(t)] = t.untyped_storage().nbytes() // t.element_size()
    return sum(storages.values())


def _slot_owners(buffer: Tensor, tokens: Tensor) -> list[int | None]:
    """For each slot of `buffer` [B, KV, W, D], the index of the token of `tokens` [B, KV, n, D] it holds."""
    owners: list[int | None] = []
    for s in range(buffer.shape[2]):
        slot = buffer[:, :, s]
        owners.append(next((p for p in range(tokens.shape[2]) if torch.equal(slot, tokens[:, :, p])), None))
    return owners


# --- one learner cache driven beside the tokens it was given -------------------------------------------


class _Driver:
    """Feeds one learner cache seeded tokens and checks every result, the buffers and seq_len."""

    def __init__(self, cls: Any, cfg: _Config, seed: int, label: str = "a new WindowCache") -> None:
        self.cfg = cfg
        self.cache = _make(cls, cfg)
        self.gen = generator(seed)
        self._start(label)

    def _start(self, label: str) -> None:
        self.calls: list[list[tuple[Tensor, Tensor]]] = [[] for _ in range(self.cfg.num_layers)]
        self.returned: list[tuple[Any, Any]] = []
        self.given: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []  # caller's k, v and copies
        self.pointers: dict[int, tuple[int, int]] = {}
        held = _seq_len(self.cache)
        if held != 0:
            raise CheckFailed(
                f"{label} already holds {held} tokens before any update: caches share state (lists or "
                "counters in class attributes, a mutable default argument or module-level variables); "
                "create every layer's buffers and count in __init__, on self"
            )
        elements = _float_elements(_held(self.cache))
        if elements:
            raise CheckFailed(
                f"{label} holds {elements} floating-point elements before any update: the buffers must be "
                "allocated at each layer's first update (only then are B, KV, D, the dtype and the device "
                "known)"
            )

    def seen(self, layer: int) -> int:
        return sum(k.shape[2] for k, _ in self.calls[layer])

    def where(self, layer: int) -> str:
        sizes = [k.shape[2] for k, _ in self.calls[layer]]
        return f"{self.cfg.label()}, layer {layer}, after updates of {sizes} tokens ({sum(sizes)} seen)"

    def _new(self, n_new: int) -> tuple[Tensor, Tensor]:
        cfg = self.cfg
        if cfg.transposed:
            k = randn(self.gen, cfg.B, n_new, cfg.KV, cfg.D, dtype=cfg.dtype).transpose(1, 2)
            v = randn(self.gen, cfg.B, n_new, cfg.KV, cfg.D, dtype=cfg.dtype).transpose(1, 2)
            return k, v
        shape = (cfg.B, cfg.KV, n_new, cfg.D)
        return randn(self.gen, *shape, dtype=cfg.dtype), randn(self.gen, *shape, dtype=cfg.dtype)

    def update(self, layer: int, n_new: int) -> None:
        k, v = self._new(n_new)
        self.calls[layer].append((k.clone(), v.clone()))
        watch = _DuplicateWrites()
        where = self.where(layer)
        try:
            with watch:
                out = call_pure(self.cache.update, layer, k, v, what="WindowCache.update")
        except CheckFailed as exc:
            text = str(exc)
            if self.cfg.dtype != torch.float32 and "raised" in text and "dtype" in text.lower():
                raise CheckFailed(
                    f"{where}: {text.rstrip('.')}. With {self.cfg.dtype} k and v the buffers must be in k's "
                    "dtype: allocate them with k.new_zeros(B, KV, window, D) (or dtype=k.dtype, "
                    "device=k.device)"
                ) from None
            raise
        if watch.found:
            raise CheckFailed(f"{where}: {_DUPLICATE_MESSAGE}")
        expect(
            isinstance(out, (tuple, list)) and len(out) == 2,
            f"update(layer, k, v) must return a pair (k_all, v_all), got {type(out).__name__}",
        )
        self._compare(out, layer)
        held = _held(self.cache)
        self._check_not_views(out, held, where)
        for result, copy in self.returned:
            assert_unchanged(result, copy, "a (k_all, v_all) pair that update returned earlier", _ALIASING)
        self.returned.append((out, snapshot(out)))
        for old_k, old_v, k_copy, v_copy in self.given:
            if not (torch.equal(old_k, k_copy) and torch.equal(old_v, v_copy)):
                raise CheckFailed(
                    f"{where}: a k or v tensor the caller passed to an EARLIER update changed: your cache "
                    "kept the caller's tensor (or a view of it) as its buffer and wrote into it later. "
                    "Allocate your own buffers (k.new_zeros(B, KV, window, D)) and copy the tokens in"
                )
        self.given.append((k, v, k.clone(), v.clone()))
        self._check_buffers(layer, held)

    def _compare(self, out: Any, layer: int) -> None:
        where = self.where(layer)
        for i, name in enumerate(("k_all", "v_all")):
            got = out[i]
            expect(isinstance(got, Tensor), f"{where}: {name} must be a tensor, got {type(got).__name__}")
            calls = [c[i] for c in self.calls[layer]]
            want = _expected(calls, self.cfg.window)
            assert_dtype(
                got, self.cfg.dtype, f"{where}: {name}",
                hint="the result must be in k's dtype: allocate the buffers with k's dtype "
                "(k.new_zeros(...) or dtype=k.dtype), since torch.cat promotes to the wider dtype",
            )  # fmt: skip
            if tuple(got.shape) == tuple(want.shape) and torch.equal(got, want):
                continue
            mistake = _diagnose(got, calls, self.cfg.window)
            if mistake:
                raise CheckFailed(f"{where}: {name} is wrong: {mistake}")
            other = _expected([c[1 - i] for c in self.calls[layer]], self.cfg.window)
            if matches(got, other, atol=0.0):
                raise CheckFailed(
                    f"{where}: keys and values are swapped: return (k_all, v_all) in that order"
                )
            self._check_shape(got, want, layer, name)
            if got.shape[0] > 1 and all(
                any(torch.equal(got[b], want[c]) for c in range(want.shape[0])) for b in range(got.shape[0])
            ):
                raise CheckFailed(
                    f"{where}: {name} has the right tokens in the wrong batch rows: keep the batch axis "
                    "(dim 0) as it is; index only the sequence axis (dim 2)"
                )
            raise CheckFailed(
                f"{where}: {name} is wrong: it must hold the layer's last min(seen, window) tokens oldest "
                "first, then all T_new new tokens, each exactly as given (batch rows and heads unmixed)"
            )

    def _check_shape(self, got: Tensor, want: Tensor, layer: int, name: str) -> None:
        if tuple(got.shape) == tuple(want.shape):
            return
        W = self.cfg.window
        seen = self.seen(layer)
        n_new = self.calls[layer][-1][0].shape[2]
        before = seen - n_new
        T = got.shape[2] if got.dim() == 4 else None
        everything = sum(self.seen(i) for i in range(self.cfg.num_layers))
        hints = [
            (got.dim() != 4 or tuple(got.shape[:2]) != tuple(want.shape[:2]) or got.shape[3] != self.cfg.D,
             "the result must be [B, KV, kept + T_new, D]: concatenate on the sequence axis, dim=2"),
            (T == n_new and before > 0, "you returned only the new tokens; the kept ones come first"),
            (T == min(W, n_new) and n_new > W,
             "a call longer than the window must return ALL its new tokens (they attend over all of "
             "themselves); only what the cache keeps afterwards is cut to the window"),
            (T is not None and T == min(everything - n_new, W) + n_new and everything > seen,
             "the count of seen tokens is shared by all layers (one counter for every layer): keep one "
             "per layer, self.seen[layer]"),
            (T is not None and T > want.shape[2],
             "it returned more kept tokens than the layer has: is the count of seen tokens shared by all "
             "layers, or the state shared between caches? Keep one count per layer, on self"),
        ]  # fmt: skip
        hint = next((h for ok, h in hints if ok), "kept = min(seen before this call, window)")
        raise CheckFailed(
            f"{self.where(layer)}: {name} must have shape {tuple(want.shape)}, got {tuple(got.shape)}: {hint}"
        )

    def _check_not_views(self, out: Any, held: list[Tensor], where: str) -> None:
        ring = (self.cfg.B, self.cfg.KV, self.cfg.window, self.cfg.D)
        mine = {_storage_key(t): t for t in held if t.untyped_storage().data_ptr()}
        for i, name in enumerate(("k_all", "v_all")):
            t = out[i]
            kept = mine.get(_storage_key(t)) if t.untyped_storage().data_ptr() else None
            if kept is None:
                continue
            if tuple(kept.shape) != ring and tuple(kept.shape) == tuple(t.shape):
                raise CheckFailed(
                    f"{where}: your cache keeps the {name} it returned: a copy of what update returned, "
                    "beside the ring buffers, that grows past the window; keep only the two buffers "
                    "[B, KV, window, D] per layer"
                )
            raise CheckFailed(f"{where}: {name} shares memory with a tensor your cache keeps. {_ALIASING}")

    def _check_buffers(self, layer: int, held: list[Tensor]) -> None:
        """The layer's key and value buffers [B, KV, W, D] hold token p at slot p % W, written in place."""
        cfg, W = self.cfg, self.cfg.window
        where = self.where(layer)
        seen = self.seen(layer)
        kept = min(seen, W)
        positions = torch.arange(seen - kept, seen)
        slots = positions % W
        found = []
        for i, name in enumerate(("key", "value")):
            tokens = torch.cat([c[i] for c in self.calls[layer]], dim=2)  # (B, KV, seen, D)
            want = tokens[:, :, positions]
            buffer = next(
                (
                    t for t in held
                    if tuple(t.shape) == (cfg.B, cfg.KV, W, cfg.D) and t.dtype == cfg.dtype
                    and torch.equal(t[:, :, slots], want)
                ),
                None,
            )  # fmt: skip
            if buffer is None:
                raise CheckFailed(f"{where}: {self._buffer_problem(name, held, tokens, seen, layer)}")
            found.append(buffer.data_ptr())
        pointers = (found[0], found[1])
        if layer not in self.pointers:
            self.pointers[layer] = pointers
        elif self.pointers[layer] != pointers:
            raise CheckFailed(
                f"{where}: the layer's buffers are not the ones allocated at its first update (their memory "
                f"moved): {_IN_PLACE}"
            )
        limit = 2 * len(self.pointers) * cfg.buffer_elements
        total = _float_elements(held)
        if total > limit:
            returned = any(
                t.shape[2] == kept + self.calls[layer][-1][0].shape[2] and t.shape[2] != W
                for t in held
                if t.dim() == 4
            )
            cause = (
                "it keeps a copy of what update returned (k_all / v_all): keep only the two ring buffers"
                if returned
                else "it keeps more than the two ring buffers per layer: a growing copy of the tokens, a "
                "list of the new k and v, or buffers allocated for layers not updated yet (allocate each "
                "layer's at its own first update)"
            )
            raise CheckFailed(
                f"{where}: your cache holds {total} floating-point elements, but two buffers [B={cfg.B}, "
                f"KV={cfg.KV}, window={W}, D={cfg.D}] for each of the {len(self.pointers)} layers updated so "
                f"far hold {limit}: {cause}"
            )

    def _buffer_problem(self, name: str, held: list[Tensor], tokens: Tensor, seen: int, layer: int) -> str:
        cfg, W = self.cfg, self.cfg.window
        kept = min(seen, W)
        positions = torch.arange(seen - kept, seen)
        shape = (cfg.B, cfg.KV, W, cfg.D)
        want = tokens[:, :, positions]
        rings = [t for t in held if tuple(t.shape) == shape and t.is_floating_point()]
        for t in rings:
            if t.dtype != cfg.dtype and matches(t[:, :, positions % W].to(cfg.dtype), want, atol=0.0):
                return (
                    f"the {name} buffer is {t.dtype}, not k's dtype {cfg.dtype}: allocate it with "
                    "k.new_zeros(B, KV, window, D) (or dtype=k.dtype, device=k.device)"
                )
        for t in rings:
            if t.dtype == cfg.dtype and (
                torch.equal(t[:, :, :kept], want) or torch.equal(t[:, :, W - kept :], want)
            ):
                return (
                    f"the {name} buffer holds the kept tokens oldest first, side by side (shifted at every "
                    f"step): {_SLOTS}, overwriting the oldest one in place"
                )
        for message, rule in _WRONG_RULES:
            if rule.delta or rule.slot_order or rule.write_first or rule.new_first:
                continue  # these read the ring wrongly; the ring itself is right
            _, ring = _simulate(list(tokens.split([c[0].shape[2] for c in self.calls[layer]], 2)), W, rule)
            filled = torch.arange(min(seen, W))
            if any(t.dtype == cfg.dtype and torch.equal(t[:, :, filled], ring[:, :, filled]) for t in rings):
                return f"the {name} buffer is wrong: {message}"
        for t in rings:
            if t.dtype == cfg.dtype:
                owners = _slot_owners(t, tokens)
                if any(o is not None for o in owners):
                    expected = {int(p) % W: int(p) for p in positions}
                    bad = next(s for s in range(W) if s in expected and owners[s] != expected[s])
                    held_as = "no token it was given" if owners[bad] is None else f"token {owners[bad]}"
                    return (
                        f"slot {bad} of the {name} buffer should hold token {expected[bad]}, but holds "
                        f"{held_as}: {_SLOTS}"
                    )
        if not any(t.is_floating_point() for t in held):
            return (
                "no tensor is reachable from your cache object (its attributes): caches that keep their "
                "buffers in class attributes or module-level variables share state between caches; keep "
                "each layer's key and value buffers on self (lists created in __init__ or reset())"
            )
        others = sorted(
            {
                tuple(t.shape)
                for t in held
                if t.is_floating_point() and t.dim() == 4 and tuple(t.shape) != shape
            }
        )
        found = f" (it holds tensors of shapes {others[:4]})" if others else ""
        near = [s for s in others if s[:2] == shape[:2] and s[3] == shape[3] and abs(s[2] - W) == 1]
        if near:
            return (
                f"your {name} buffers have {near[0][2]} slots, not window = {W} (off by one): allocate "
                "[B, KV, window, D] and keep the last window tokens"
            )
        return (
            f"your cache holds no {name} buffer of shape [B, KV, window, D] = {list(shape)} in k's dtype "
            f"with the layer's kept tokens in it{found}: keep each layer's keys and values in two buffers "
            "allocated at the layer's first update (k.new_zeros(B, KV, window, D)), even when fewer than "
            f"window tokens have arrived, and write into them in place: {_SLOTS}"
        )

    def step(self, n_new: int) -> None:
        """n_new tokens for every layer in turn, as a forward pass does; seq_len between and after."""
        for layer in range(self.cfg.num_layers):
            self.update(layer, n_new)
            if layer == 0 and self.cfg.num_layers > 1:  # the model reads seq_len between layer updates
                self.check_seq_len(between=True)
        self.check_seq_len()

    def check_seq_len(self, between: bool = False) -> None:
        n = self.seen(0)
        got = _seq_len(self.cache)
        if got == n:
            return
        W = self.cfg.window
        calls = len(self.calls[0])
        everything = sum(self.seen(i) for i in range(self.cfg.num_layers))
        hints = [
            (n > W and got == min(n, W),
             "seq_len counts the kept tokens; it must count every token seen, evicted ones included (it is "
             "the position of the next token)"),
            (got == everything and self.cfg.num_layers > 1,
             "seq_len adds the tokens of every layer: one counter shared by all layers; keep one count per "
             "layer and return layer 0's"),
            (calls != n and got == calls, "seq_len must count tokens, not calls to update"),
            (between and got == n - self.calls[0][-1][0].shape[2],
             "seq_len lags behind layer 0 while a forward pass is halfway through the layers (it reads "
             "another layer's count, or a counter advanced by the last layer): return layer 0's own count"),
        ]  # fmt: skip
        hint = next((h for ok, h in hints if ok), "seq_len must be the number of tokens layer 0 has seen")
        moment = " (after layer 0's update, before the other layers')" if between else ""
        raise CheckFailed(
            f"{self.cfg.label()}: after {n} tokens{moment}, seq_len must be {n}, got {got}: {hint}"
        )

    def reset(self, cfg: _Config | None = None) -> None:
        reset = getattr(self.cache, "reset", None)
        expect(callable(reset), "WindowCache needs a reset() method")
        before = self.seen(0)
        call(reset, what="WindowCache.reset")
        try:
            self._start("a WindowCache after reset()")
        except CheckFailed as exc:
            raise CheckFailed(
                f"after {before} tokens then reset(): {exc}. reset() must forget every token of every layer"
            ) from None
        if cfg is not None:
            self.cfg = cfg


# --- scenarios ------------------------------------------------------------------------------------------


def _scenario(cls: Any, cfg: _Config, steps: list[int], seed: int) -> _Driver:
    driver = _Driver(cls, cfg, seed)
    for n_new in steps:
        driver.step(n_new)
    return driver


def _reset_case(cls: Any) -> None:
    """reset() then a new sequence on every layer, with another batch size and dtype (a fresh start)."""
    cfg = _Config(3, 4, B=2, KV=2, D=4)
    driver = _scenario(cls, cfg, [6, 1, 2], seed=50)
    driver.reset(_Config(3, 4, B=3, KV=2, D=4, dtype=torch.float16))
    for n_new in (2, 1, 5, 1):
        try:
            driver.step(n_new)
        except CheckFailed as exc:
            raise CheckFailed(
                f"after reset(), a new sequence (batch 3, float16): {exc} (reset() must forget every token "
                "of every layer, buffers and counts: the next update is each layer's first)"
            ) from None


def _two_instances(cls: Any) -> None:
    """Two caches used in turn keep their own tokens (no state in class attributes or defaults)."""
    cfg = _Config(2, 3, B=1, KV=2, D=4)
    sizes = [2, 1, 2, 1]
    made: list[_Driver] = []

    def make() -> _Driver:
        label = "a second new WindowCache" if made else "a new WindowCache"
        made.append(_Driver(cls, cfg, seed=60 + len(made), label=label))
        return made[-1]

    def step(driver: _Driver, which: int, i: int) -> None:
        driver.step(sizes[i] + which)

    interleaved(make, step, len(sizes), "WindowCache")


def _layer_zero_counts(cls: Any) -> None:
    """seq_len is layer 0's count, also while another layer has seen more (a caller may go in any order)."""
    cache = call(lambda: cls(3, 4), what="WindowCache(3, 4)")
    k = torch.randn(2, 2, 5, 8, generator=torch.Generator().manual_seed(71))
    done = []
    for layer, T, want in ((2, 5, 0), (1, 3, 0), (0, 2, 2), (2, 1, 2)):
        new = k[:, :, :T]
        call(cache.update, layer, new, new, what=f"WindowCache.update({layer}, ...)")
        done.append(f"layer {layer} ({T} tokens)")
        got = _seq_len(cache)
        expect(
            got == want,
            f"WindowCache(3, 4) after updates of {', '.join(done)}, in that order: seq_len is {got}, "
            f"expected {want}, the tokens layer 0 has seen (not the most any layer has seen, nor a count "
            "shared by the layers)",
        )


def _on_the_meta_device(cls: Any) -> None:
    """k on the 'meta' device (it stands in for a GPU here): buffers and results on k's device."""
    cfg = _Config(2, 4, B=2, KV=2, D=8)
    cache = _make(cls, cfg)
    shape = (cfg.B, cfg.KV, cfg.window, cfg.D)
    where = f"{cfg.label()} with k, v on the 'meta' device (a stand-in for a GPU)"
    started: set[int] = set()
    for n_new in (3, 1, 6):
        for layer in range(cfg.num_layers):
            k = torch.empty(cfg.B, cfg.KV, n_new, cfg.D, device="meta")
            v = torch.empty(cfg.B, cfg.KV, n_new, cfg.D, device="meta")
            try:
                out = cache.update(layer, k, v)
            except Exception:  # noqa: BLE001 - decided below: a meta tensor has no data to read
                out = None
            held = [t for t in _held(cache) if t.is_floating_point()]
            misplaced = [t for t in held if t.device.type != "meta"]
            if misplaced:
                raise CheckFailed(
                    f"{where}: your cache holds a tensor of shape {list(misplaced[0].shape)} on "
                    f"{misplaced[0].device}: allocate the buffers on k's device, k.new_zeros(B, KV, window, "
                    "D) or torch.zeros(..., dtype=k.dtype, device=k.device)"
                )
            if out is None:
                return  # the code reads data that a meta tensor has not got: nothing more to learn here
            for i, name in enumerate(("k_all", "v_all")):
                expect(
                    isinstance(out[i], Tensor) and out[i].device.type == "meta",
                    f"{where}: {name} must be on k's device",
                )
            started.add(layer)
            rings = [t for t in held if tuple(t.shape) == shape and t.dtype == cfg.dtype]
            expect(
                len(rings) >= 2 * len(started),
                f"{where}: after layer {layer}'s first update the cache must hold two buffers {list(shape)} "
                "(keys and values) on k's device, in k's dtype",
            )


def _in_the_model(cls: Any, steps: list[int], window: int, seed: int) -> None:
    """A tiny GQA model reads a stream longer than the window through the learner's cache and kvlib's."""
    from kvlib.cache.evict import SlidingWindowKVCache

    model = tiny_model(seed=seed, num_heads=4, num_kv_heads=2, num_layers=3, dim=32, max_seq_len=64)
    L = model.config.num_layers
    total = sum(steps)
    assert total <= model.config.max_seq_len, "the stream must stay inside the model's context"
    ids = torch.randint(0, model.config.vocab_size, (2, total), generator=generator(seed))
    yours = _make(cls, _Config(L, window, B=2, KV=2, D=model.config.head_dim))
    ref = SlidingWindowKVCache(L, window)
    start = 0
    with torch.no_grad():
        for n in steps:
            want = model(ids[:, start : start + n], cache=ref)
            got = call(model, ids[:, start : start + n], cache=yours, what="the model with your WindowCache")
            assert_close(
                got, want,
                f"a tiny model's logits (4 query heads, 2 KV heads, {L} layers, batch 2) for tokens "
                f"{start}..{start + n - 1} of a stream read through your WindowCache({L}, window={window})",
                "the cache works alone but not inside the model: update is called once per layer per "
                "forward pass, and seq_len gives the position of the next token",
                atol=1e-4, rtol=1e-4,
            )  # fmt: skip
            start += n
    elements = _float_elements(_held(yours))
    limit = 2 * L * 2 * 2 * window * model.config.head_dim
    expect(
        elements <= limit,
        f"after a {total}-token stream through a {L}-layer model, your WindowCache({L}, window={window}) "
        f"holds {elements} floating-point elements; its two ring buffers per layer hold {limit}: it keeps "
        "a growing copy of the tokens",
    )


_VISIBLE = _Config(2, 5, B=2, KV=2, D=4)
_VISIBLE_STEPS = [3, 1, 1, 2, 1, 7, 1, 1]
_VISIBLE_MODEL = ([9, 1, 1, 8, 1], 6)


@graded("WindowCache", *REFERENCES)
def window_cache_visible(cls: Any) -> None:
    """A batch of 2, 2 KV heads, a prompt shorter than the window, then small steps past it; a tiny GQA
    model (4 query heads, 2 KV heads) reading a stream longer than the window."""
    _scenario(cls, _VISIBLE, _VISIBLE_STEPS, seed=1)
    _in_the_model(cls, *_VISIBLE_MODEL, seed=2)
    print("window_cache: visible tests passed")


_HIDDEN: tuple[tuple[_Config, list[int]], ...] = (
    # a prompt longer than the window, calls longer than it and exactly as long, as a model's views
    (_Config(2, 4, B=2, KV=2, D=4, transposed=True), [10, 1, 1, 9, 1, 4, 4, 2]),
    # window 1: only the previous token is kept
    (_Config(2, 1, B=2, KV=1, D=2), [1, 1, 3, 1, 2]),
    # six layers: one count per layer
    (_Config(6, 3, B=1, KV=1, D=2), [2, 1, 1, 1, 5]),
    # a stream that never fills the window
    (_Config(2, 20, B=2, KV=2, D=4), [3, 4, 1]),
    # fp16 and bf16 in, the same dtype out and in the buffers
    (_Config(2, 4, B=2, KV=3, D=8, dtype=torch.float16), [5, 1, 1, 2, 6]),
    (_Config(2, 6, B=3, KV=2, D=4, dtype=torch.bfloat16, transposed=True), [2, 5, 1, 9, 1]),
    # past the visible sizes: head_dim 64, a window of 33, a 100-token prompt
    (_Config(1, 33, B=3, KV=2, D=64), [100, 1, 17, 40, 1]),
)


@graded("WindowCache", *REFERENCES)
def window_cache_hidden(cls: Any) -> None:
    _scenario(cls, _VISIBLE, _VISIBLE_STEPS, seed=1)
    _two_instances(cls)  # early: shared state would otherwise fail later scenarios with vaguer messages
    for i, (cfg, steps) in enumerate(_HIDDEN):
        _scenario(cls, cfg, steps, seed=10 + i)
    _reset_case(cls)
    _layer_zero_counts(cls)
    _on_the_meta_device(cls)
    _in_the_model(cls, [13, 1, 1, 1, 11, 1, 1, 8, 1, 2, 1, 16], 8, seed=3)
    print("window_cache: hidden tests passed")
